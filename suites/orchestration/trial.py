"""One trial: (method, benchmark, seed, options) -> a self-describing record. Runs inside a Ray worker."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import os
import platform
import resource
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aurora.api import TargetingError, create_method, merged, param_report, train_heads
from aurora.checkpoint import DamagedCheckpoint, check_sha256, file_sha256, load_trained, save_trained
from suites.backbones import build_backbone
from suites.benchmarks import BENCHMARKS, Benchmark
from suites.engine import distributed
from suites.engine.device import Precision, device_name, flush_denormals, resolve_device, resolve_precision
from suites.engine.loop import TrainConfig, fit
from suites.record import TrialRecord, validation_score


@dataclass
class TrialSpec:
    method: str
    benchmark: str
    seed: int = 0
    method_options: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)  # TrainConfig overrides
    backbone: str = ""  # default: the benchmark's default backbone
    backbone_options: dict = field(default_factory=dict)
    benchmark_options: dict = field(default_factory=dict)  # task settings (k_test, ...) among them
    output_dir: str = "outputs"
    threads: int = 1
    label: str = ""  # the row name in tables: a variant such as "aurora-no-ice" (default: the method)
    suite: str = ""

    @property
    def row(self) -> str:
        return self.label or self.method

    @property
    def name(self) -> str:
        return f"{self.benchmark}--{self.row}--seed{self.seed}"

    def train_config(self) -> TrainConfig:
        """The trial's training settings; loading workers default to the trial's CPUs but one."""
        return TrainConfig(**{"num_workers": max(0, self.threads - 1), **self.train})


def hardware(device: torch.device | None = None) -> str:
    """The CPU, its cores, the GPU where one computed (``device``), and torch's version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {device_name(device)}" if device is not None and device.type == "cuda" else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def build_trial(spec: TrialSpec):
    """-> (benchmark, (train, val, test) data, backbone, method) with the method applied to the backbone."""
    bench = BENCHMARKS.get(spec.benchmark)(**spec.benchmark_options)
    splits = bench.load()  # fails on bad data before any training
    backbone = build_backbone(spec.backbone or bench.default_backbone,
                              **{**bench.backbone_options(), **spec.backbone_options})
    torch.manual_seed(spec.seed)  # the method's own initialisation depends on the trial seed
    method = create_method(spec.method, **spec.method_options)
    method.apply(backbone.model)
    if method.trains:
        train_heads(backbone.model, bench.heads(backbone.model))
        if not any(p.requires_grad for p in backbone.model.parameters()):
            raise TargetingError(f"{spec.method} leaves nothing to train on {spec.benchmark} (benchmark heads: "
                                 f"{', '.join(bench.heads(backbone.model)) or 'none'}); leave it out of this benchmark's suite")
    return bench, splits, backbone, method


def run_trial(spec: TrialSpec, on_validation: Callable[[dict, float, dict | None], None] | None = None,
              resume: dict | None = None) -> TrialRecord:
    """Build, adapt, train and evaluate; return everything the tracker and the reports need.

    ``on_validation(row, score, snapshot)`` is called at every evaluation point of the training loop before
    the last (every ``eval_every`` steps) with the history row (step, mean losses, ``val_*`` metrics) and the
    validation score: the first metric the benchmark's ``validate`` returns, higher is better (an early
    stopping scheduler ranks trials by it). The record's ``val_score`` is the last one (NaN without training).
    With ``train.checkpoints`` on, ``snapshot`` is the whole training state there, with the history so far
    (else None); ``resume`` continues a trial from such a state.
    """
    start, cfg, precision = _begin(spec)
    device = precision.device
    bench, (train_data, val_data, test_data), backbone, method = build_trial(spec)
    model = backbone.model.to(device)  # the method's tensors with it
    report = param_report(model)
    history: list[dict] = list(resume["history"]) if resume is not None else []
    stats: dict = {}
    weights = None
    if method.trains:
        def on_epoch(step: int, losses: dict, training_state) -> None:
            with evaluating(method, model, cfg), precision.autocast():
                val = bench.validate(model, backbone, val_data)
            history.append({"step": step, **losses, **{f"val_{k}": v for k, v in val.items()}})
            if on_validation is None or step == last_step:
                return  # the last evaluation point travels with the record
            snapshot = {**training_state(), "history": list(history)} if cfg.checkpoints else None
            on_validation(history[-1], validation_score(history), snapshot)

        objective = bench.objective(backbone)
        last_step = cfg.total_steps(objective.items(train_data), distributed.world()[1])
        stats = fit(model, objective, train_data, cfg, seed=spec.seed, method=method, on_epoch=on_epoch,
                    resume=resume)
        if distributed.is_main():  # data-parallel processes hold the same weights: one file
            weights = str(save_trained(model, trial_folder(spec) / "trained.safetensors", method))
    with evaluating(method, model, cfg), precision.autocast():
        metrics = bench.evaluate(model, backbone, test_data)
    return _record(spec, cfg, bench, backbone, method, precision, start, metrics, params=report.to_dict(),
                   history=history, val_score=validation_score(history), train_stats=stats, weights=weights,
                   weights_sha256=file_sha256(weights) if weights else "", processes=distributed.world()[1])


def _begin(spec: TrialSpec) -> tuple[float, TrainConfig, Precision]:
    """What every run of a trial (trained, or only evaluated) does first: starts its clock, gives back the memory
    earlier trials in this process freed and counts its peak afresh, sets its threads, settings and device
    -> (start time, settings, precision)."""
    start = time.perf_counter()
    release_free_memory()
    reset_peak_rss()
    torch.set_num_threads(max(1, spec.threads))
    cfg = spec.train_config()
    return start, cfg, compute_on(cfg)


def _record(spec: TrialSpec, cfg: TrainConfig, bench, backbone, method, precision: Precision, start: float,
            metrics: dict, **facts) -> TrialRecord:
    """What every record of a trial says about its spec, settings, task, backbone and machine, with ``facts``
    (params, history, weights, ...) of this particular run."""
    return TrialRecord(
        name=spec.name, row=spec.row, spec=dataclasses.asdict(spec), method_config=method.config.to_dict(),
        train_config=dataclasses.asdict(cfg), task_config=bench.task_config(), tier=bench.tier, task=bench.task,
        primary_metric=bench.primary_metric, backbone=backbone.source, metrics=metrics,
        wall_time_s=time.perf_counter() - start,
        peak_rss_mb=peak_rss_mb(), hardware=hardware(precision.device),
        device=device_name(precision.device), precision=precision.name, **facts,
    )


def release_free_memory() -> None:
    """Give the memory earlier trials freed back to the system. glibc keeps freed memory in per-thread arenas,
    and a reused Ray worker runs each trial on a new thread: without this, its resident memory grows trial
    after trial (here from 1.1 to 3.3 GB over seven trials of the retrieval suite)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def reset_peak_rss() -> None:
    """Count this process's peak resident memory afresh from here (Linux's VmHWM), so that a trial in a Ray
    worker that ran other trials before reports its own peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident memory since ``reset_peak_rss`` (Linux); elsewhere over the process's life so far."""
    with contextlib.suppress(OSError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trial_folder(spec: TrialSpec) -> Path:
    """Where one run of a trial writes: unique per run, so two suites (or two runs of one trial) sharing an
    output folder never read or log each other's files."""
    return Path(spec.output_dir) / "trials" / (spec.suite or "adhoc") / spec.name / uuid.uuid4().hex[:12]


def evaluate_saved(spec: TrialSpec, weights: str | Path | None, weights_sha256: str = "",
                   result_file: str | Path | None = None) -> TrialRecord:
    """Build ``spec``'s trial, load its saved trained tensors (checked against ``weights_sha256`` where given)
    and evaluate on the test split, without training -> a record of that evaluation (no history, no new
    weights file; ``weights_sha256`` names the file it read). ``result_file``: also write the benchmark's
    evaluation-server file for its unanswered test questions (``write_results``: VQAv2's test2015)."""
    start, cfg, precision = _begin(spec)
    bench, (_, _, test_data), backbone, method = build_trial(spec)
    if method.trains:
        if weights is None:
            raise DamagedCheckpoint(f"trial {spec.name} trained {spec.method} but its run has no saved weights "
                                    "(trained.safetensors): rerun the trial")
        if weights_sha256:
            check_sha256(weights, weights_sha256)
        load_trained(backbone.model, weights)
    model = backbone.model.to(precision.device).eval()
    with evaluating(method, model, cfg), precision.autocast():
        metrics = bench.evaluate(model, backbone, test_data)
        if result_file is not None:
            bench.write_results(model, backbone, result_file, k_test=bench.k_test)
    return _record(spec, cfg, bench, backbone, method, precision, start, metrics,
                   params=param_report(model).to_dict(), weights_sha256=weights_sha256 if method.trains else "")


class TransferError(ValueError):
    """A transfer target that is not a benchmark of the source's task and tier."""


def writes_results(benchmark: str) -> bool:
    """Whether ``benchmark`` writes an evaluation-server file for test questions without answers."""
    return callable(getattr(BENCHMARKS.get(benchmark)(), "write_results", None))


def transfer_spec(source: TrialSpec, benchmark: str, benchmark_options: dict | None = None) -> TrialSpec:
    """The source trial's spec on another benchmark (zero-shot transfer of its tuned weights): the same method,
    options, seed, training settings and backbone (the source benchmark's default where the spec named none).
    The source benchmark's task settings (re-ranking depth and score, ...) and ``data_root`` carry over, so the
    target is scored with the source's protocol; ``benchmark_options`` add to or override them.

    Raises ``TransferError`` for a benchmark of another task or tier (proxy weights never score a real
    benchmark), naming the valid ones; an unknown name lists every benchmark.
    """
    src = BENCHMARKS.get(source.benchmark)(**source.benchmark_options)
    target = BENCHMARKS.get(benchmark)()
    if benchmark == source.benchmark:
        raise TransferError(f"weights tuned on {benchmark!r} are evaluated there by their own run: re-evaluate "
                            "that run without --benchmark")
    if (target.task, target.tier) != (src.task, src.tier):
        valid = [n for n, factory in BENCHMARKS.items()
                 if n != source.benchmark and (factory().task, factory().tier) == (src.task, src.tier)]
        raise TransferError(f"benchmark {benchmark!r} is {target.tier}-tier {target.task}; weights tuned on "
                            f"{source.benchmark!r} ({src.tier}-tier {src.task}) transfer to: "
                            f"{', '.join(valid) or 'none'}")
    fields = {f.name for f in dataclasses.fields(target)}
    carried = {k: v for k, v in src.task_config().items() if k in target.task_settings}
    if "data_root" in source.benchmark_options and "data_root" in fields:
        carried["data_root"] = source.benchmark_options["data_root"]
    options = {**carried, **(benchmark_options or {})}
    try:
        BENCHMARKS.get(benchmark)(**options)
    except (TypeError, ValueError) as err:  # an option the benchmark does not have, or a bad value
        own = fields - {f.name for f in dataclasses.fields(Benchmark)}
        raise TransferError(f"benchmark {benchmark!r}: {err}; its options: {', '.join(sorted(own))}") from None
    return dataclasses.replace(source, benchmark=benchmark, backbone=source.backbone or src.default_backbone,
                               benchmark_options=options)


def compute_on(cfg: TrainConfig) -> Precision:
    """The device a trial computes on (``train.device``) and its precision there (``train.precision``); on the CPU,
    denormals flushed (``flush_denormals``)."""
    device = resolve_device(cfg.device)
    flush_denormals(device)
    return Precision(resolve_precision(cfg.precision, device), device)


def evaluating(method, model, cfg: TrainConfig):
    """Evaluation with the method's deltas merged into the weights, unless the settings say otherwise."""
    return merged(method, model) if cfg.merged_eval is not False else contextlib.nullcontext()
