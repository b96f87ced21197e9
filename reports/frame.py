"""The one frame of finished trials that the terminal ranking, the stored ranking and the report all read, built
from the trials' ``TrialRecord``s (in memory after a suite, or read back from MLflow by ``reports.store``).

One row per trial: benchmark, method (the table row), registry_method, suite, seed, tier, task, modality,
backbone, hardware, device, precision, primary_metric, rerank_itc_weight, every test metric, ``params_<count>``,
the training stats, wall_time_s, peak_rss_mb, ``option.<name>`` per method option and ``task.<name>`` per task
setting (nested ones dotted, all as text).
"""

from __future__ import annotations

import json
import math

import pandas as pd

from suites.record import TrialRecord

# Video retrieval logs the median rank (as text-to-video papers report it) and image retrieval does not.
MEDIAN_RANK_SUFFIX = "_r_mdr"


def modality(record: TrialRecord) -> str | None:
    """What a retrieval trial ranked: "video" when it logged a median rank (``*_r_mdr``), else "image".
    None for the other tasks: no table tells them apart by modality."""
    if record.task != "retrieval":
        return None
    return "video" if any(k.endswith(MEDIAN_RANK_SUFFIX) for k in record.metrics) else "image"


# Task settings that records logged before task settings had their own section keep in ``train_config``.
MOVED_TASK_SETTINGS = ("k_test", "rerank_itc_weight", "loss")


def task_settings(record: TrialRecord) -> dict:
    """The task settings the metrics depend on (``task_config``; older records: in ``train_config``)."""
    moved = {k: v for k, v in record.train_config.items() if k in MOVED_TASK_SETTINGS}
    return {**moved, **record.task_config}


def rerank_itc_weight(record: TrialRecord) -> str | float:
    """The re-ranking score's ITC weight as text ("None": ITC's logit scale; "1.0"), NaN where not recorded."""
    settings = task_settings(record)
    return str(settings["rerank_itc_weight"]) if "rerank_itc_weight" in settings else math.nan


def method_options(config: dict, prefix: str = "option") -> dict[str, str]:
    """The method's options as strings (nested keys dotted, lists as JSON), as MLflow logs them as params:
    the ablation tables compare and print them as text ("True", "8", "dense")."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(method_options(value, f"{prefix}.{key}"))
        else:
            out[f"{prefix}.{key}"] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


def trial_row(record: TrialRecord) -> dict:
    """One trial's row of the frame."""
    spec = record.spec
    numbers = {**record.metrics, **{f"params_{k}": v for k, v in record.params.items()}, **record.train_stats,
               "wall_time_s": record.wall_time_s, "peak_rss_mb": record.peak_rss_mb}
    return {"benchmark": spec["benchmark"], "method": record.row, "registry_method": spec["method"],
            "suite": spec.get("suite", ""), "seed": int(spec["seed"]), "tier": record.tier, "task": record.task,
            "modality": modality(record), "backbone": record.backbone, "hardware": record.hardware,
            "device": record.device, "precision": record.precision, "primary_metric": record.primary_metric,
            "rerank_itc_weight": rerank_itc_weight(record), **{k: float(v) for k, v in numbers.items()},
            **method_options(record.method_config), **method_options(task_settings(record), "task")}


def frame(records: list[TrialRecord]) -> pd.DataFrame:
    """One row per record, in the order given (a plain dict is read as ``TrialRecord.from_dict``)."""
    return pd.DataFrame([trial_row(TrialRecord.from_dict(r) if isinstance(r, dict) else r) for r in records])


def summarize(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean and std over seeds per (benchmark, method): columns '<c>' and '<c>_std', plus 'seeds'."""
    grouped = df.groupby(["benchmark", "method"])
    mean = grouped[columns].mean()
    std = grouped[columns].std(ddof=1).fillna(0.0).add_suffix("_std")
    return pd.concat([mean, std, grouped.size().rename("seeds")], axis=1).reset_index()
