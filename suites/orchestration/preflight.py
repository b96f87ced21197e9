"""What a suite checks in the driver before Ray starts a trial: every error here is one line, exit code 2.

An output folder that cannot be written, GPUs asked for that the machine does not have, a trial device Ray would
hide, a real benchmark's missing or malformed data, a checkpoint that does not load (or lacks weights of the
task's model); and the proxy backbones are pretrained (or loaded from the cache) once here, with a progress
bar, rather than in every trial.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch

from suites.backbones import BACKBONES, build_backbone
from suites.benchmarks import BENCHMARKS
from suites.orchestration.runner import DRIVER_CPUS
from suites.orchestration.trial import TrialSpec


class PreflightError(ValueError):
    """A suite that cannot run as asked on these resources; the message says what to change."""


def check_resources(specs: list[TrialSpec], resources: dict, address: str | None) -> None:
    """GPUs and CPUs per trial against the local machine (a cluster's are Ray's to count), and trial devices.
    ``resources``: gpus_per_trial and cpus_per_trial (per process), processes_per_trial."""
    gpus, processes = resources.get("gpus_per_trial", 0), resources.get("processes_per_trial", 1)
    cpus = resources.get("cpus_per_trial", 1)
    if gpus > 0 and address is None:
        have, need = torch.cuda.device_count(), math.ceil(gpus * processes)
        if have < need:
            per = f" x {processes} processes" if processes > 1 else ""
            raise PreflightError(f"--gpus-per-trial {gpus:g}{per} asks for {need} GPU(s) per trial, but this machine "
                                 f"has {have}; use --gpus-per-trial 0, or --address for a cluster with GPUs")
    if processes > 1 and address is None and processes * cpus + DRIVER_CPUS > (os.cpu_count() or 1):
        raise PreflightError(f"{processes} processes x {cpus:g} CPUs per trial, plus its driver, need more than this "
                             f"machine's {os.cpu_count()} CPUs; lower --cpus-per-trial (fractions allowed)")
    if gpus == 0:
        for spec in specs:
            device = str(spec.train.get("device") or "auto")
            if device.startswith("cuda"):
                raise PreflightError(f"{spec.name}: train.device {device!r} needs a GPU reserved for the trial "
                                     "(--gpus-per-trial, or resources.gpus_per_trial): Ray hides GPUs from trials "
                                     "that reserve none")


def check_data(specs: list[TrialSpec]) -> None:
    """Load each real benchmark's splits once: missing or malformed files fail here, naming the path."""
    seen = set()
    for spec in specs:
        key = (spec.benchmark, repr(sorted(spec.benchmark_options.items())))
        if key in seen:  # the same data for every method and seed
            continue
        seen.add(key)
        bench = BENCHMARKS.get(spec.benchmark)(**spec.benchmark_options)
        if bench.tier == "real":
            bench.load()


def prepare_backbones(specs: list[TrialSpec]) -> None:
    """Build each backbone the trials need once, with the options the trials give it: pretrains the proxy
    (cached for the trials) and loads every checkpoint given by path or hub id, so that one that does not
    load, or lacks weights of the task's model, fails before any trial starts. A checkpoint's load report
    (weights left random, weights unused) is printed, one line each."""
    needed: dict[tuple[str, str], dict] = {}
    for s in specs:
        bench = BENCHMARKS.get(s.benchmark)(**s.benchmark_options)
        # the task's model class: the VQA proxy grows from the retrieval one and pretrains its decoder
        options = {**bench.backbone_options(), **s.backbone_options}
        needed[s.backbone or bench.default_backbone, repr(sorted(options.items()))] = options
    for (name, _), options in sorted(needed.items()):
        if name == "proxy" or name not in BACKBONES:
            backbone = build_backbone(name, **options)
            if "load_report" in backbone.info:
                print(f"checkpoint {backbone.info['load_report']}", flush=True)


def check_output(output_dir: str | Path) -> None:
    """The output folder (MLflow store, Ray results, trained weights) takes a file: tried, since permission
    bits say nothing of a read-only mount. A folder not made yet is tried at its nearest existing parent."""
    folder = Path(output_dir).expanduser().resolve()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise PreflightError(f"cannot write to the output folder {folder} ({err.strerror or err} in {existing}); "
                             "make it writable or pass another --output") from None


def preflight(specs: list[TrialSpec], resources: dict | None = None, address: str | None = None,
              output_dir: str | Path | None = None) -> None:
    if output_dir is not None:
        check_output(output_dir)
    check_resources(specs, resources or {}, address)
    check_data(specs)
    prepare_backbones(specs)
