"""The whole report, rebuilt from MLflow alone (``write_report``): the finished trials' records, as one frame, give
per (suite, tier) every table that its runs support (LaTeX, and Markdown in the summary; ``TABLE_BUILDERS``), the
Markdown retrieval overview, the parameters-vs-score plot, the training-step plot from ``suites.perf.step``'s
JSON, and ``index.md``, one page that shows and links all of them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports import render
from reports.captions import caption
from reports.frame import frame
from reports.grid import Grid, reported_rows, reproduced_rows
from reports.labels import display_name, labelled, load_labels
from reports.plots import efficiency, params_vs_score
from reports.reported import load_reported
from reports.specs import TABLES, TableSpec, reported_params
from reports.store import load_records
from reports.tables import markdown_table
from reports.transfer import load_transfers, transfer_frame, transfer_grids


@dataclass
class Section:
    """What one (suite, tier) contributes to the summary page."""

    title: str
    tables: list[tuple[Grid, Path]] = field(default_factory=list)
    overview: Path | None = None  # the Markdown R_mean overview of its retrieval trials
    plots: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Scope:
    """One (suite, tier) of the store: what every table builder reads."""

    trials: pd.DataFrame  # its trials, ``method`` holding each row's label (``reports.labels``)
    reported: pd.DataFrame  # every published number (``reports.reported``)
    suite: str
    tier: str
    labels: dict[str, str]  # the user's label overrides (reported rows are labelled with them too)
    # its zero-shot transfer runs, one row each (``reports.transfer``); empty where it has none
    transfers: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def stem(self) -> str:
        return f"{self.suite or 'runs'}_{self.tier}"


@dataclass
class Table:
    name: str  # the file name: <stem>_<name>.tex
    grid: Grid


def spec_tables(spec: TableSpec) -> Callable[[Scope], list[Table]]:
    """The builder of ``spec``'s tables: one per benchmark (VQA: up to ``benchmarks_per_table`` side by side)."""
    def build(scope: Scope) -> list[Table]:
        chosen = spec.select(scope.trials)
        benches = sorted(chosen["benchmark"].unique()) if not chosen.empty else []
        per = spec.benchmarks_per_table
        chunks = [benches[i:i + per] for i in range(0, len(benches), per)]
        tables = []
        for i, chunk in enumerate(chunks, 1):
            name = (f"{spec.name}_{chunk[0]}" if per == 1 else spec.name if len(chunks) == 1
                    else f"{spec.name}_part{i}")
            tables.append(Table(name, spec_grid(spec, chosen[chosen["benchmark"].isin(chunk)], scope, name)))
        return tables
    return build


def spec_grid(spec: TableSpec, chosen: pd.DataFrame, scope: Scope, name: str) -> Grid:
    """``spec``'s table over ``chosen``, the trials of some of its benchmarks."""
    groups = [(b, spec.columns(part)) for b, part in chosen.groupby("benchmark", sort=True)]
    rows = reproduced_rows(chosen, groups, spec.stub, spec.order)
    published, sources = (reported_rows(scope.reported, groups, reported_params,
                                        lambda m: display_name(m, scope.labels)) if spec.reported else ([], []))
    benches = [b for b, _ in groups]
    title = f"{spec.title}, {' and '.join(benches)}"
    mean_only = any(c.mean_only for _, cols in groups for c in cols)
    text = caption(title, spec.protocol(chosen), chosen, scope.tier, bool(published), mean_only)
    label = f"tab:{scope.stem}-{name}".replace("_", "-")  # a label is not escaped
    return Grid(title, text, label, list(spec.stub_headers), groups, rows, published, sources)


def transfer_tables(scope: Scope) -> list[Table]:
    """The zero-shot transfer tables of one (suite, tier): a trial's weights scored on other benchmarks."""
    return [Table(name, grid) for name, grid in transfer_grids(scope.transfers, scope.suite, scope.tier)]


# Every table of the report: each builder turns one (suite, tier) into its tables (none where its trials are
# absent). A new kind of table is one more builder here (or one more ``TableSpec`` in ``specs.TABLES``).
TABLE_BUILDERS: list[Callable[[Scope], list[Table]]] = [*(spec_tables(spec) for spec in TABLES), transfer_tables]


def write_section(scope: Scope, out: Path) -> Section:
    """Every table, the retrieval overview and the bubble chart of one (suite, tier), written under ``out``."""
    section = Section(f"Suite {scope.suite or 'unnamed'}, {scope.tier} tier")
    for table in (t for build in TABLE_BUILDERS for t in build(scope)):
        path = out / f"{scope.stem}_{table.name}.tex"
        path.write_text(render.latex(table.grid))
        section.tables.append((table.grid, path))
    retrieval = scope.trials[scope.trials["task"] == "retrieval"]  # the overview: both protocols, loss and time
    if not retrieval.empty:
        hardware = "; ".join(sorted(retrieval["hardware"].unique()))
        section.overview = out / f"{scope.stem}.md"
        section.overview.write_text(f"Hardware: {hardware}\n\n{markdown_table(retrieval)}\n")
    if can_plot():
        section.plots = params_vs_score(scope.trials, out / f"{scope.stem}_params_vs_score",
                                        f"{scope.suite or 'runs'} ({scope.tier} tier)")
    return section


def can_plot() -> bool:
    """Whether seaborn is installed (the ``reports`` extra); without it the report has tables only."""
    import importlib.util

    return importlib.util.find_spec("seaborn") is not None


def summary(sections: list[Section], efficiency: list[Path], origin: str) -> str:
    """The one-page Markdown summary: every table inline with a link to its LaTeX, the retrieval overview with a
    link to its file, every plot."""
    lines = ["# aurora-bench report", "", origin, "", INPUT_HINT, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for grid, path in s.tables:
            lines += [f"### {grid.title}", "", grid.caption, "", f"LaTeX: [{path.name}]({path.name}) "
                      f"(`\\ref{{{grid.label}}}`)", "", render.markdown(grid), ""]
        if s.overview is not None:
            lines += ["### Retrieval overview: R_mean of both protocols, trainable parameters, loss, time", "",
                      f"Markdown: [{s.overview.name}]({s.overview.name})", "", s.overview.read_text(), ""]
        lines += _plot_lines(s.plots, "Trainable parameters against mean score (bubble area: the method's "
                                      "trainable bytes)")
    if efficiency:  # only where a bench JSON was found and plotted
        lines += ["## Training-step benchmark (`nox -s bench`)", ""]
        lines += _plot_lines(efficiency, "Step time and peak memory per method")
    return "\n".join(lines)


INPUT_HINT = ("Each `.tex` file is a float's body (caption, label, tabular; `booktabs`): put it in the "
              "float of your choice, `\\begin{table}[t] \\input{<file>} \\end{table}` or `table*`. The tables "
              "are laid out for a 5.5 in (NeurIPS) text width at 10 pt; long method labels can still widen one: "
              "`python -m reports.texcheck <files>` says which. The Markdown copies below give every cell its std.")


def _plot_lines(paths: list[Path], what: str) -> list[str]:
    if not paths:
        return [f"{what}: not drawn (seaborn is missing: `pip install aurora-bench[reports]`).", ""]
    pdf, png = (p.name for p in paths)
    return [f"{what} ([PDF]({pdf})):", "", f"![{what}]({png})", ""]


def write_all(trials: pd.DataFrame, out: Path, reported: pd.DataFrame, bench_json: Path | None,
              origin: str, labels: dict[str, str] | None = None, transfers: pd.DataFrame | None = None) -> list[Path]:
    """Write the report under ``out`` -> its files: the LaTeX tables first, the retrieval overviews, plots,
    then ``index.md``. ``trials``: the frame of ``reports.frame``, rows named as logged (``labels`` relabels)."""
    labels = labels or {}
    trials = labelled(trials, labels)
    out.mkdir(parents=True, exist_ok=True)
    transfers = labelled(transfers, labels) if transfers is not None and not transfers.empty else pd.DataFrame()
    sections = [write_section(Scope(part, reported, suite, tier, labels, _in_scope(transfers, suite, tier)), out)
                for (suite, tier), part in trials.groupby([trials["suite"].fillna(""), "tier"], sort=True)]
    plots = (efficiency(json.loads(bench_json.read_text()), out / "efficiency", labels)
             if bench_json and can_plot() else [])
    index = out / "index.md"
    index.write_text(summary(sections, plots, origin) + "\n")
    tables = [p for s in sections for _, p in s.tables]
    overviews = [s.overview for s in sections if s.overview is not None]
    return [*tables, *overviews, *(p for s in sections for p in s.plots), *plots, index]


def _in_scope(transfers: pd.DataFrame, suite: str, tier: str) -> pd.DataFrame:
    if transfers.empty:
        return transfers
    return transfers[(transfers["suite"].fillna("") == suite) & (transfers["tier"] == tier)]


def write_report(output_dir: str | Path, tracking_uri: str, experiment: str = "aurora-bench",
                 reported: list[str | Path] | None = None, bench_json: str | Path | None = None,
                 labels: Mapping[str, str] | str | Path | None = None) -> list[Path]:
    """Rebuild the report under ``<output_dir>/reports`` from the MLflow runs alone (no trial is rerun).

    ``tracking_uri``: the store, resolved by the caller. ``reported``: YAML files or folders of published numbers
    (default: the packaged ``reports/reported/``; ``[]`` for none). ``bench_json``: ``suites.perf.step``'s output
    for the training-step plot (default: ``<output_dir>/bench.json`` where it exists). ``labels``: method label
    overrides, a mapping or a YAML file (``reports.labels``; default: ``<output_dir>/labels.yaml`` where it
    exists). Returns the files: LaTeX tables first, Markdown overviews, plots, ``index.md``. Raises
    FileNotFoundError when the experiment has no finished trial, LabelError on a labels file it cannot apply.
    """
    default_labels = Path(output_dir) / "labels.yaml"
    overrides = load_labels(labels if labels is not None else default_labels if default_labels.is_file() else None)
    records = load_records(tracking_uri, experiment)
    if not records:
        raise FileNotFoundError(f"no finished trial runs in experiment {experiment!r} at {tracking_uri}; "
                                "run a suite first")
    default_bench = Path(output_dir) / "bench.json"
    bench = Path(bench_json) if bench_json else default_bench if default_bench.is_file() else None
    origin = (f"Rebuilt from the MLflow runs at `{tracking_uri}` (experiment `{experiment}`, {len(records)} finished "
              "trials); no trial was rerun.")
    return write_all(frame(records), Path(output_dir) / "reports", load_reported(reported), bench, origin,
                     overrides, transfer_frame(load_transfers(tracking_uri, experiment)))
