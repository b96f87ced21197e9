"""A result table apart from its output format: per benchmark a group of metric columns, one row per method
(mean and std over its seeds), the best and second-best cell of each column marked, and reported rows kept in
a block of their own. ``reports.render`` writes it as LaTeX or Markdown."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reports.frame import summarize


@dataclass(frozen=True)
class Column:
    metric: str  # the logged metric name
    header: str
    higher_is_better: bool = True
    digits: int = 1
    group: str = ""  # the header spanning it in a one-benchmark table ("Image-to-text"); "" for none
    tex_header: str = ""  # the header as LaTeX, where plain text would not do ("R$_{mean}$")
    mean_only: bool = False  # LaTeX prints the mean alone: the std of every recall would not fit one column


@dataclass
class Cell:
    mean: float = math.nan
    std: float = 0.0
    seeds: int = 0  # 0: a reported number, printed as published
    mark: str = ""  # "best", "second" or ""


@dataclass
class Row:
    stub: list[str]  # the leading text cells: method, options, parameters
    cells: list[Cell]
    notes: list[int] = field(default_factory=list)  # reported rows: 1-based indices into Grid.sources


@dataclass
class Grid:
    title: str
    caption: str
    label: str
    stub_headers: list[str]
    groups: list[tuple[str, list[Column]]]  # (benchmark, its columns)
    rows: list[Row]
    reported: list[Row] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[Column]:
        return [c for _, cols in self.groups for c in cols]

    def spans(self) -> list[tuple[str, int]]:
        """The spanning headers over the metric columns, left to right, as (text, columns): the benchmarks,
        or in a one-benchmark table (its name in the caption) the columns' own groups."""
        if len(self.groups) > 1:
            return [(bench, len(cols)) for bench, cols in self.groups]
        spans: list[tuple[str, int]] = []
        for col in self.columns:
            if spans and spans[-1][0] == col.group:
                spans[-1] = (col.group, spans[-1][1] + 1)
            else:
                spans.append((col.group, 1))
        return spans


# A stub function gives one method's leading cells from its trials; an order function its sort key.
Stub = Callable[[str, pd.DataFrame], list[str]]


def reproduced_rows(df: pd.DataFrame, groups: list[tuple[str, list[Column]]], stub: Stub,
                    order: Callable[[str, pd.DataFrame], tuple]) -> list[Row]:
    """One row per method of ``df`` (trials: benchmark, method, seed, metrics), ordered by ``order``,
    with each column's best and second-best means marked."""
    metrics = sorted({c.metric for _, cols in groups for c in cols} & set(df.columns))
    table = summarize(df, metrics).set_index(["benchmark", "method"])
    methods = sorted(df["method"].unique(), key=lambda m: order(m, df[df["method"] == m]))
    rows = [Row(stub(m, df[df["method"] == m]), [_cell(table, b, m, c) for b, cols in groups for c in cols])
            for m in methods]
    mark_best(rows, [c for _, cols in groups for c in cols])
    return rows


def _cell(table: pd.DataFrame, bench: str, method: str, col: Column) -> Cell:
    if (bench, method) not in table.index or col.metric not in table:
        return Cell()
    row = table.loc[(bench, method)]
    return Cell(float(row[col.metric]), float(row[col.metric + "_std"]), int(row["seeds"]))


def mark_best(rows: list[Row], columns: list[Column]) -> None:
    """Mark, per column, the best mean "best" and the next distinct one "second" (ties share the mark)."""
    for j, col in enumerate(columns):
        values = np.array([r.cells[j].mean for r in rows], dtype=float)
        distinct = _distinct(values[np.isfinite(values)], col.higher_is_better)
        for r in rows:
            for mark, target in zip(("best", "second"), distinct[:2]):
                if np.isfinite(r.cells[j].mean) and np.isclose(r.cells[j].mean, target):
                    r.cells[j].mark = mark


def _distinct(values: np.ndarray, higher_is_better: bool) -> list[float]:
    """Values best first, with values equal up to float noise merged."""
    out: list[float] = []
    for v in sorted(values, reverse=higher_is_better):
        if not out or not np.isclose(v, out[-1]):
            out.append(float(v))
    return out


def reported_rows(reported: pd.DataFrame, groups: list[tuple[str, list[Column]]],
                  params: Callable[[pd.DataFrame], str],
                  name: Callable[[str], str] = str) -> tuple[list[Row], list[str]]:
    """Rows for the reported numbers that fall in this table's columns -> (rows, their sources).

    ``reported``: one number per row (paper, benchmark, method, metric, value, source); ``params`` gives the
    parameter cell of one (paper, method) from its numbers; ``name`` the row label of a reported method.
    """
    keys = {(b, c.metric) for b, cols in groups for c in cols}
    hit = reported[pd.Series([(b, m) in keys for b, m in zip(reported["benchmark"], reported["metric"])],
                             index=reported.index, dtype=bool)]
    benches = [b for b, _ in groups]
    rows, sources = [], []
    for (paper, method), part in hit.groupby(["paper", "method"], sort=True):
        mine = reported[(reported["paper"] == paper) & (reported["method"] == method)
                        & reported["benchmark"].isin(benches)]
        notes = [_note(sources, s) for s in dict.fromkeys(mine["source"])]
        values = {(b, m): v for b, m, v in zip(part["benchmark"], part["metric"], part["value"])}
        cells = [Cell(values.get((b, c.metric), math.nan)) for b, cols in groups for c in cols]
        label = name(method)
        label = label if label.lower() == paper.lower() else f"{label} ({paper})"
        rows.append(Row([label, params(mine)], cells, notes))
    return rows, sources


def _note(sources: list[str], source: str) -> int:
    if source not in sources:
        sources.append(source)
    return sources.index(source) + 1
