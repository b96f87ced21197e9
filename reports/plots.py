"""Efficiency plots (seaborn; each written as PDF and PNG): trainable parameters against mean score per method
(the paper's bubble chart), and training-step time and peak memory per method from ``suites.perf.step``'s JSON.

``python -m reports.plots outputs/bench.json`` writes ``outputs/bench_efficiency.{pdf,png}`` (``nox -s bench``).
Figures are built on ``matplotlib.figure.Figure`` (no pyplot state, no display needed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from reports.tables import rank_table


def _figure(width: float, height: float, panels: int = 1):
    """A figure with ``panels`` axes side by side, seaborn's paper style."""
    import seaborn as sns
    from matplotlib.figure import Figure

    sns.set_theme(context="paper", style="whitegrid")
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, panels)


def _save(fig, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    for p in paths:
        fig.savefig(p, dpi=200)
    return paths


def score_by_method(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: trainable parameters, the mean over benchmarks of the primary metric (each a mean over
    seeds), and the trials' mean peak memory (MB)."""
    ranks = rank_table(df)
    out = ranks.groupby("method").agg(params=("params_method_trainable", "first"), score=("score", "mean"),
                                      benchmarks=("benchmark", "nunique"))
    out["memory_mb"] = df.groupby("method")["peak_rss_mb"].mean()
    return out.reset_index()


def params_vs_score(df: pd.DataFrame, stem: Path, title: str) -> list[Path]:
    """Bubble chart: trainable parameters (log x) against mean primary score; bubble area: trial peak memory.
    A method with no trainable parameters sits at x = 1."""
    import seaborn as sns

    data = score_by_method(df)
    data["x"] = data["params"].clip(lower=1)
    fig, ax = _figure(5.5, 3.8)
    sns.scatterplot(data=data, x="x", y="score", size="memory_mb", hue="method", sizes=(60, 700), alpha=0.7,
                    ax=ax, legend=False)
    for _, r in data.iterrows():
        ax.annotate(r["method"], (r["x"], r["score"]), xytext=(6, 4), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    primaries = ", ".join(sorted(df["primary_metric"].unique()))
    ax.set(xlabel="trainable parameters (log; 0 drawn at 1)", ylabel=f"mean score ({primaries})", title=title)
    ax.text(0.99, 0.01, "bubble area: trial peak RSS", transform=ax.transAxes, ha="right", va="bottom", fontsize=6)
    return _save(fig, stem)


def bench_frame(bench: dict) -> pd.DataFrame:
    """One row per timed step (method, backbone, step_time_s, peak_rss_mb) from ``suites.perf.step``'s JSON."""
    rows = [{"method": r["method"], "backbone": r["backbone"], "step_time_s": t, "peak_rss_mb": r["peak_rss_mb"]}
            for r in bench["rows"] for t in r.get("step_times_s") or [r["step_time_s"]]]
    return pd.DataFrame(rows)


def efficiency(bench: dict, stem: Path) -> list[Path]:
    """Step time (median over the rounds, bars from min to max) and peak memory per method and backbone."""
    import seaborn as sns

    data = bench_frame(bench)
    fig, (time_ax, mem_ax) = _figure(8, 3.4, panels=2)
    sns.barplot(data=data, x="method", y="step_time_s", hue="backbone", estimator="median", errorbar=("pi", 100),
                ax=time_ax)
    sns.barplot(data=data.drop_duplicates(["method", "backbone"]), x="method", y="peak_rss_mb", hue="backbone",
                errorbar=None, ax=mem_ax)
    batch = sorted({r.get("batch") for r in bench["rows"]} - {None})
    time_ax.set(ylabel="seconds per optimizer step", xlabel="", title="training step time (median; bars: min to max)")
    mem_ax.set(ylabel="peak RSS (MB)", xlabel="", title="peak memory")
    fig.suptitle(f"batch {', '.join(map(str, batch))}; {bench.get('hardware', 'hardware not recorded')}", fontsize=8)
    return _save(fig, stem)


def efficiency_from_json(path: str | Path, stem: Path | None = None) -> list[Path]:
    """The efficiency plot of a ``suites.perf.step`` JSON file (default: ``<name>_efficiency`` beside it)."""
    path = Path(path)
    return efficiency(json.loads(path.read_text()), stem or path.with_name(f"{path.stem}_efficiency"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Plot a suites.perf.step JSON file (step time and peak memory).")
    parser.add_argument("bench_json", nargs="?", default="outputs/bench.json")
    for p in efficiency_from_json(parser.parse_args(argv).bench_json):
        print(p)


if __name__ == "__main__":
    main()
