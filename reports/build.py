"""The whole report, rebuilt from MLflow alone (``write_report``): the finished trials' records, as one frame, give
per (suite, tier) every table that its runs support (LaTeX, and Markdown in the summary), the parameters-vs-score
plot, the training-step plot from ``suites.perf.step``'s JSON, and ``index.md``, one page that shows and links all
of them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports import render
from reports.frame import frame
from reports.grid import Grid, reported_rows, reproduced_rows
from reports.plots import efficiency, params_vs_score
from reports.reported import load_reported
from reports.specs import TABLES, TableSpec, reported_params
from reports.store import load_records
from reports.tables import markdown_table


@dataclass
class Section:
    """What one (suite, tier) contributes to the summary page."""

    title: str
    tables: list[tuple[Grid, Path]] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


def caption(spec: TableSpec, trials: pd.DataFrame, suite: str, tier: str, reported: bool) -> str:
    """Plain-text caption: what, tier, suite, seeds, marks, hardware (``render.latex`` escapes it)."""
    seeds = trials.groupby(["benchmark", "method"])["seed"].nunique()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    hardware = "; ".join(sorted(trials["hardware"].dropna().unique()))
    apart = " among reproduced rows; reported rows are published numbers, not rerun" if reported else ""
    score = f" {rerank_score(trials)}" if spec.reranked else ""
    return (f"{spec.title}. {tier.capitalize()} tier, suite {suite or 'unnamed'}. Mean ± std over {n} seeds; "
            f"best per column in bold, second underlined{apart}. Params: method-trainable parameters.{score} "
            f"Hardware: {hardware or 'not recorded'}.")


def rerank_score(trials: pd.DataFrame) -> str:
    """The re-ranking score the trials used (``rerank_itc_weight``: None is ITC's logit scale, 1/τ)."""
    weights = sorted({str(w) for w in trials["rerank_itc_weight"].dropna()})
    texts = ["ITM logit + ITC cosine/τ" if w == "None" else f"ITM logit + {float(w):g} · ITC cosine"
             for w in weights]
    return f"Re-ranking score: {'; '.join(texts)}." if texts else "Re-ranking score not recorded."


def grid_for(spec: TableSpec, trials: pd.DataFrame, reported: pd.DataFrame, suite: str, tier: str) -> Grid | None:
    """``spec``'s table over one (suite, tier)'s trials; None when they hold nothing it shows."""
    chosen = spec.select(trials)
    if chosen.empty:
        return None
    groups = [(b, spec.columns(part)) for b, part in chosen.groupby("benchmark", sort=True)]
    rows = reproduced_rows(chosen, groups, spec.stub, spec.order)
    published, sources = (reported_rows(reported, groups, reported_params) if spec.reported else ([], []))
    label = f"tab:{suite or 'runs'}-{tier}-{spec.name}".replace("_", "-")  # a label is not escaped
    return Grid(caption(spec, chosen, suite, tier, bool(published)), label, list(spec.stub_headers), groups, rows,
                published, sources)


def write_section(trials: pd.DataFrame, reported: pd.DataFrame, suite: str, tier: str, out: Path) -> Section:
    """Every table and the bubble chart of one (suite, tier), written under ``out``."""
    stem = f"{suite or 'runs'}_{tier}"
    section = Section(f"Suite {suite or 'unnamed'}, {tier} tier")
    for spec in TABLES:
        grid = grid_for(spec, trials, reported, suite, tier)
        if grid is not None:
            path = out / f"{stem}_{spec.name}.tex"
            path.write_text(render.latex(grid))
            section.tables.append((grid, path))
    retrieval = trials[trials["task"] == "retrieval"]  # the overview: both protocols, loss and time per row
    if not retrieval.empty:
        hardware = "; ".join(sorted(retrieval["hardware"].unique()))
        (out / f"{stem}.md").write_text(f"Hardware: {hardware}\n\n{markdown_table(retrieval)}\n")
    if can_plot():
        section.plots = params_vs_score(trials, out / f"{stem}_params_vs_score",
                                        f"{suite or 'runs'} ({tier} tier): parameters vs mean score")
    return section


def can_plot() -> bool:
    """Whether seaborn is installed (the ``reports`` extra); without it the report has tables only."""
    import importlib.util

    return importlib.util.find_spec("seaborn") is not None


def summary(sections: list[Section], efficiency: list[Path], origin: str) -> str:
    """The one-page Markdown summary: every table inline with a link to its LaTeX, every plot."""
    lines = ["# aurora-bench report", "", origin, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for grid, path in s.tables:
            lines += [f"### {grid.caption.split('. ')[0]}", "", grid.caption, "", f"LaTeX: [{path.name}]({path.name})",
                      "", render.markdown(grid), ""]
        lines += _plot_lines(s.plots, "Trainable parameters against mean score (bubble area: trial peak memory)")
    if efficiency:  # only where a bench JSON was found and plotted
        lines += ["## Training-step benchmark (`nox -s bench`)", ""]
        lines += _plot_lines(efficiency, "Step time and peak memory per method")
    return "\n".join(lines)


def _plot_lines(paths: list[Path], what: str) -> list[str]:
    if not paths:
        return [f"{what}: not drawn (seaborn is missing: `pip install aurora-bench[reports]`).", ""]
    pdf, png = (p.name for p in paths)
    return [f"{what} ([PDF]({pdf})):", "", f"![{what}]({png})", ""]


def write_all(trials: pd.DataFrame, out: Path, reported: pd.DataFrame, bench_json: Path | None,
              origin: str) -> list[Path]:
    """Write the report under ``out`` -> its files: the LaTeX tables first, then plots, then ``index.md``."""
    out.mkdir(parents=True, exist_ok=True)
    sections = [write_section(part, reported, suite, tier, out)
                for (suite, tier), part in trials.groupby([trials["suite"].fillna(""), "tier"], sort=True)]
    plots = efficiency(json.loads(bench_json.read_text()), out / "efficiency") if bench_json and can_plot() else []
    index = out / "index.md"
    index.write_text(summary(sections, plots, origin) + "\n")
    tables = [p for s in sections for _, p in s.tables]
    return [*tables, *(p for s in sections for p in s.plots), *plots, index]


def write_report(output_dir: str | Path, tracking_uri: str, experiment: str = "aurora-bench",
                 reported: list[str | Path] | None = None, bench_json: str | Path | None = None) -> list[Path]:
    """Rebuild the report under ``<output_dir>/reports`` from the MLflow runs alone (no trial is rerun).

    ``tracking_uri``: the store, resolved by the caller. ``reported``: YAML files or folders of published numbers
    (default: the packaged ``reports/reported/``; ``[]`` for none). ``bench_json``: ``suites.perf.step``'s output
    for the training-step plot (default: ``<output_dir>/bench.json`` where it exists). Returns the files: LaTeX
    tables first, plots, ``index.md``. Raises FileNotFoundError when the experiment has no finished trial.
    """
    records = load_records(tracking_uri, experiment)
    if not records:
        raise FileNotFoundError(f"no finished trial runs in experiment {experiment!r} at {tracking_uri}; "
                                "run a suite first")
    default_bench = Path(output_dir) / "bench.json"
    bench = Path(bench_json) if bench_json else default_bench if default_bench.is_file() else None
    origin = (f"Rebuilt from the MLflow runs at `{tracking_uri}` (experiment `{experiment}`, {len(records)} finished "
              "trials); no trial was rerun.")
    return write_all(frame(records), Path(output_dir) / "reports", load_reported(reported), bench, origin)
