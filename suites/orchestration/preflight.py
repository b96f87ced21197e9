"""What a suite checks in the driver before Ray starts a trial: every error here is one line, exit code 2.

GPUs asked for that the machine does not have, a trial device Ray would hide, a real benchmark's missing or
malformed data, a checkpoint that does not load; and the proxy backbones are pretrained (or loaded from the
cache) once here, with a progress bar, rather than in every trial.
"""

from __future__ import annotations

import math

import torch

from suites.backbones import BACKBONES, build_backbone
from suites.benchmarks import BENCHMARKS
from suites.orchestration.trial import TrialSpec


class PreflightError(ValueError):
    """A suite that cannot run as asked on these resources; the message says what to change."""


def check_gpus(specs: list[TrialSpec], gpus_per_trial: float, address: str | None) -> None:
    """GPUs per trial against the local machine (a cluster's are Ray's to count), and trial devices."""
    if gpus_per_trial > 0 and address is None:
        have, need = torch.cuda.device_count(), math.ceil(gpus_per_trial)
        if have < need:
            raise PreflightError(f"--gpus-per-trial {gpus_per_trial:g} asks for {need} GPU(s) per trial, but this "
                                 f"machine has {have}; use --gpus-per-trial 0, or --address for a cluster with GPUs")
    if gpus_per_trial == 0:
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
    """Build each backbone the trials need once: pretrains the proxy (cached for the trials) and loads every
    checkpoint given by path or hub id, so that one that does not load fails before any trial starts."""
    needed = set()
    for s in specs:
        bench = BENCHMARKS.get(s.benchmark)(**s.benchmark_options)
        # the task's model class: the VQA proxy grows from the retrieval one and pretrains its decoder
        needed.add((s.backbone or bench.default_backbone, tuple(sorted(bench.backbone_options().items()))))
    for name, options in sorted(needed):
        if name == "proxy" or name not in BACKBONES:
            build_backbone(name, **dict(options))


def preflight(specs: list[TrialSpec], gpus_per_trial: float = 0, address: str | None = None) -> None:
    check_gpus(specs, gpus_per_trial, address)
    check_data(specs)
    prepare_backbones(specs)
