"""The typed trial records: what a trial returns, the runner logs, tracking stores and reports read.

Plain dataclasses of JSON values and no torch, so the driver, MLflow (``record.json``) and ``reports/`` share
one schema without importing the engine.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrialRecord:
    """A finished trial.

    spec: the ``TrialSpec`` as a dict (method, benchmark, seed, options, ...); row: its table row name.
    task_config: the benchmark's task settings the metrics depend on (re-ranking depth and score, loss settings).
    history: one row per evaluation point: step, mean losses, ``val_*`` metrics.
    """

    name: str
    row: str
    spec: dict
    method_config: dict
    train_config: dict
    tier: str
    task: str
    primary_metric: str
    backbone: str
    params: dict
    metrics: dict
    task_config: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    val_score: float = math.nan
    train_stats: dict = field(default_factory=dict)
    weights: str | None = None  # the trained tensors' file, unique to this trial run
    weights_sha256: str = ""  # its content hash, checked whenever the file is read back
    wall_time_s: float = 0.0
    peak_rss_mb: float = 0.0
    hardware: str = ""
    device: str = ""  # what computed: "cpu" or the GPU's name
    precision: str = ""  # the autocast precision of training and evaluation
    processes: int = 1  # data-parallel processes that trained it (global batch: processes x batch_size)
    run_id: str = ""  # set by the driver once the record is logged
    orchestration_overhead_s: float | None = None  # driver time for the trial minus the trial's own

    @property
    def benchmark(self) -> str:
        return self.spec["benchmark"]

    @property
    def seed(self) -> int:
        return int(self.spec["seed"])

    @property
    def primary(self) -> float:
        return float(self.metrics.get(self.primary_metric, math.nan))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str)

    @classmethod
    def from_dict(cls, raw: dict) -> TrialRecord:
        """Tolerant of records logged by older versions: unknown keys are dropped, missing ones defaulted."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> TrialRecord:
        return cls.from_dict(json.loads(text))


@dataclass
class FailedTrial:
    """A trial that raised (after its retries); ``reason`` is the last line of ``error``."""

    spec: dict
    name: str
    row: str
    error: str
    reason: str = ""
    run_id: str = ""


@dataclass
class StoppedTrial:
    """A trial an early-stopping scheduler stopped: logged with its validation curve, not ranked."""

    spec: dict
    name: str
    row: str
    stopped_early: str
    step: int = 0
    val_score: float = math.nan
    history: list = field(default_factory=list)
    wall_time_s: float = 0.0
    run_id: str = ""


def validation_score(history: list[dict]) -> float:
    """The last validation score of a trial's history (the first ``val_*`` entry of its last row), or NaN."""
    last = history[-1] if history else {}
    return next((float(v) for k, v in last.items() if k.startswith("val_")), math.nan)
