"""Contract tests over the benchmark and backbone registries (the methods' are in test_methods_contract.py):
every registered entry keeps the protocol the trial relies on."""

from __future__ import annotations

import dataclasses

import pytest

from suites.backbones import BACKBONES, BackboneUnavailable, build_backbone
from suites.benchmarks import BENCHMARKS, Benchmark, DataError
from suites.tasks.retrieval import RetrievalData


@pytest.mark.parametrize("name", BENCHMARKS.names())
def test_every_benchmark_keeps_the_protocol(name):
    bench = BENCHMARKS.get(name)()
    assert isinstance(bench, Benchmark) and bench.name == name and bench.description
    assert bench.task in ("retrieval", "vqa") and bench.tier in ("proxy", "real") and bench.primary_metric
    fields = {f.name for f in dataclasses.fields(bench)}
    assert set(bench.task_settings) <= fields, "task settings must be fields a spec can set"
    assert set(bench.task_config()) == set(bench.task_settings)
    assert bench.backbone_options() == ({} if bench.task == "retrieval" else {"task": bench.task})


@pytest.mark.parametrize("name", [n for n in BENCHMARKS.names() if BENCHMARKS.get(n)().tier == "real"])
def test_a_real_benchmark_without_data_fails_before_training(name):
    with pytest.raises(DataError, match="data_root"):
        BENCHMARKS.get(name)().load()


def test_the_tiny_test_benchmark_runs_the_whole_protocol():
    bench = BENCHMARKS.get("test-tiny")()
    backbone = build_backbone(bench.default_backbone)
    train, val, test = bench.load()
    assert all(isinstance(split, RetrievalData) for split in (train, val, test))
    objective = bench.objective(backbone)
    import numpy as np
    import torch

    batch = objective.load(train, next(objective.batches(train, 8, np.random.default_rng(0))), np.random.default_rng(0))
    losses = objective.losses(backbone.model, train, batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(losses["loss"])
    assert list(bench.validate(backbone.model, backbone, val))[0] == "itc_r_mean"
    assert bench.primary_metric in bench.evaluate(backbone.model, backbone, test)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_builder_is_documented(name):
    assert (BACKBONES.get(name).__doc__ or "").strip(), f"backbone {name!r} needs a docstring (listed by the CLI)"


@pytest.mark.parametrize("task", ["retrieval", "vqa"])
def test_the_tiny_backbone_builds_both_tasks(task):
    backbone = build_backbone("test-tiny", task=task)
    assert backbone.model.config.model_type == "blip" and backbone.source


def test_an_unregistered_name_is_a_checkpoint_path(tmp_path):
    with pytest.raises(BackboneUnavailable, match="config.json"):
        build_backbone(str(tmp_path / "no-such-checkpoint"))
