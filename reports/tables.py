"""Trial results as a frame (from MLflow runs or in-memory records), mean +- std over seeds, the terminal
ranking, and ``write_report``: the LaTeX tables, plots and summary page rebuilt from MLflow alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def frame_from_records(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        spec = r["spec"]
        rows.append({"benchmark": spec["benchmark"], "method": r["row"],
                     "suite": spec.get("suite", ""), "seed": int(spec["seed"]),
                     "tier": r["tier"], "hardware": r["hardware"], "primary_metric": r["primary_metric"],
                     **r["metrics"], **{f"params_{k}": v for k, v in r["params"].items()},
                     "itm_loss": r["train_stats"].get("itm_loss", np.nan), "wall_time_s": r["wall_time_s"],
                     "rerank_itc_weight": str(r.get("train_config", {}).get("rerank_itc_weight"))})
    return pd.DataFrame(rows)


def frame_from_runs(tracking_uri: str, experiment: str = "aurora-bench") -> pd.DataFrame:
    """Finished trial runs of an experiment; for repeated (benchmark, method, seed), the newest run."""
    runs = _trial_runs(tracking_uri, experiment)
    if runs.empty:
        return pd.DataFrame()
    runs = runs[runs["status"] == "FINISHED"].sort_values("start_time")
    frame = pd.DataFrame({
        "benchmark": runs["tags.benchmark"], "method": runs["tags.method"], "seed": runs["tags.seed"].astype(int),
        "suite": runs["tags.suite"] if "tags.suite" in runs else "",
        "tier": runs["tags.tier"], "hardware": runs["tags.hardware"], "primary_metric": runs["tags.primary_metric"],
    })
    for tag in ("task", "registry_method"):
        frame[tag] = runs.get(f"tags.{tag}")
    frame["rerank_itc_weight"] = runs.get("params.train.rerank_itc_weight")  # as logged: "None", "1.0"
    for col in runs.columns:
        if col.startswith("metrics.") and not col.startswith("metrics.epoch_"):
            frame[col.removeprefix("metrics.")] = runs[col].astype(float)
        elif col.startswith("params.method."):  # the method's options, as logged (strings: "True", "8")
            frame["option." + col.removeprefix("params.method.")] = runs[col]
    return frame.drop_duplicates(["suite", "benchmark", "method", "seed"], keep="last").reset_index(drop=True)


def _trial_runs(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """The trial runs in ``mlflow.search_runs``'s pandas layout, read through a client of ``tracking_uri``
    (``mlflow.set_tracking_uri`` would leave MLFLOW_TRACKING_URI set for the rest of the process)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    rows, token = [], None
    while found is not None:
        page = client.search_runs([found.experiment_id], "tags.kind = 'trial'", page_token=token)
        rows += [{"status": run.info.status, "start_time": run.info.start_time,
                  **{f"tags.{k}": v for k, v in run.data.tags.items()},
                  **{f"metrics.{k}": v for k, v in run.data.metrics.items()},
                  **{f"params.{k}": v for k, v in run.data.params.items()}} for run in page]
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean and std over seeds per (benchmark, method): columns '<c>' and '<c>_std', plus 'seeds'."""
    grouped = df.groupby(["benchmark", "method"])
    mean = grouped[columns].mean()
    std = grouped[columns].std(ddof=1).fillna(0.0).add_suffix("_std")
    return pd.concat([mean, std, grouped.size().rename("seeds")], axis=1).reset_index()


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


def print_ranking(records: list[dict], failures: list[dict]) -> None:
    if records:
        print(ranking_text(frame_from_records(records)))
    for f in failures:
        print(f"FAILED {f['name']}: {f['reason']}")


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


def write_report(output_dir: str | Path, tracking_uri: str | None = None, experiment: str = "aurora-bench",
                 reported: list[str | Path] | None = None, bench_json: str | Path | None = None) -> list[Path]:
    """Rebuild the report under ``<output_dir>/reports`` from the MLflow runs alone (no trial is rerun).

    ``reported``: YAML files or folders of published numbers (default: the packaged ``reports/reported/``;
    ``[]`` for none). ``bench_json``: ``suites.perf.step``'s output for the training-step plot (default:
    ``<output_dir>/bench.json`` where it exists). Returns the files: LaTeX tables first, plots, ``index.md``.
    """
    from reports.build import write_all
    from reports.reported import load_reported
    from suites.orchestration.tracking import tracking_uri as resolve_uri

    uri = resolve_uri(output_dir, tracking_uri)
    df = frame_from_runs(uri, experiment)
    if df.empty:
        raise FileNotFoundError(f"no finished trial runs in experiment {experiment!r} at {uri}; run a suite first")
    default_bench = Path(output_dir) / "bench.json"
    bench = Path(bench_json) if bench_json else default_bench if default_bench.is_file() else None
    origin = (f"Rebuilt from the MLflow runs at `{uri}` (experiment `{experiment}`, {len(df)} finished trials); "
              "no trial was rerun.")
    return write_all(df, Path(output_dir) / "reports", load_reported(reported), bench, origin)
