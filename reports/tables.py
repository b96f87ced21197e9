"""Plain-text tables from the frame of trials (``reports.frame``): the terminal ranking per benchmark, the same
ranking as text and CSV for a suite's run, and the Markdown retrieval overview of the report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.frame import frame, summarize
from suites.record import FailedTrial, TrialRecord


def rank_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark, methods ranked by the benchmark's primary metric (mean over seeds; 1 = best, ties share
    the better rank). Columns: benchmark, method, primary_metric, score, score_std, seeds, rank, trainable."""
    rows = []
    for _, part in df.groupby("benchmark"):
        primary = part["primary_metric"].iloc[0]
        table = summarize(part, [primary, "params_method_trainable", "params_percent"])
        table = table.rename(columns={primary: "score", f"{primary}_std": "score_std"})
        table["primary_metric"] = primary
        table["rank"] = table["score"].rank(ascending=False, method="min").astype(int)
        rows.append(table.sort_values("rank"))
    return pd.concat(rows, ignore_index=True)


def average_rank(ranks: pd.DataFrame) -> pd.DataFrame:
    """Across benchmarks: each method's mean rank (over the benchmarks it ran on), best first."""
    table = ranks.groupby("method").agg(average_rank=("rank", "mean"), benchmarks=("benchmark", "nunique"))
    return table.sort_values("average_rank").reset_index()


# A second protocol shown beside the primary metric where a task logs one (retrieval: ITC only).
SECONDARY = {"itm_r_mean": ("itc_r_mean", "ITC-only")}


def ranking_text(df: pd.DataFrame) -> str:
    """Per benchmark, methods ranked by the primary metric (mean +- std over seeds); then the average rank."""
    ranks = rank_table(df)
    lines = []
    for bench, rows in ranks.groupby("benchmark", sort=True):
        primary = rows["primary_metric"].iloc[0]
        second, second_name = SECONDARY.get(primary, (None, ""))
        second_table = summarize(df[df["benchmark"] == bench], [second]).set_index("method") if second in df else None
        lines.append(f"\n{bench}  (ranked by {primary}; mean +- std over seeds)")
        lines.append(f"  {'rank':<5}{'method':<24}{primary:>22}{second_name:>20}{'trainable':>12}{'%':>9}{'seeds':>7}")
        for _, r in rows.iterrows():
            extra = _pm(second_table.loc[r["method"]], second, 1) if second_table is not None else ""
            lines.append(f"  {r['rank']:<5}{r['method']:<24}{_pm(r, 'score', 1):>22}{extra:>20}"
                         f"{int(r['params_method_trainable']):>12,}{r['params_percent']:>9.3f}{int(r['seeds']):>7}")
    if ranks["benchmark"].nunique() > 1:
        lines.append("\nacross benchmarks (average rank by each benchmark's primary metric)")
        for _, r in average_rank(ranks).iterrows():
            lines.append(f"  {r['method']:<24}{r['average_rank']:>6.2f}   ({int(r['benchmarks'])} benchmarks)")
    return "\n".join(lines)


def ranking(records: list[TrialRecord]) -> tuple[str, pd.DataFrame]:
    """-> (the ranking text ``print_ranking`` prints, ``rank_table``: one row per (benchmark, method)); records:
    at least one."""
    trials = frame(records)
    return ranking_text(trials), rank_table(trials)


def print_ranking(records: list[TrialRecord], failures: list[FailedTrial]) -> None:
    """The ranking of the finished trials, then one line per failed trial."""
    if records:
        print(ranking_text(frame(records)))
    for f in failures:
        print(f"FAILED {f.name}: {f.reason}")


def markdown_table(df: pd.DataFrame) -> str:
    """Benchmark x method summary for a README: both protocols, trainable parameters, seeds."""
    cols = ["itm_r_mean", "itc_r_mean", "params_method_trainable", "params_percent", "itm_loss", "wall_time_s"]
    table = summarize(df, [c for c in cols if c in df])
    lines = ["| benchmark | method | R_mean, ITM re-ranked (primary) | R_mean, ITC only | trainable | % | "
             "final ITM loss | seeds | trial time (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for bench, rows in table.groupby("benchmark"):
        for _, r in rows.sort_values("itm_r_mean", ascending=False).iterrows():
            loss = "–" if np.isnan(r.get("itm_loss", np.nan)) else _pm(r, "itm_loss", 3)
            lines.append(f"| {bench} | {r['method']} | {_pm(r, 'itm_r_mean', 1)} | {_pm(r, 'itc_r_mean', 1)} | "
                         f"{int(r['params_method_trainable']):,} | {r['params_percent']:.2f} | {loss} | "
                         f"{int(r['seeds'])} | {r['wall_time_s']:.0f} |")
    return "\n".join(lines)


def _pm(row, col: str, digits: int) -> str:
    return f"{row[col]:.{digits}f} ± {row[col + '_std']:.{digits}f}"
