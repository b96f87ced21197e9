"""The training engine: device and precision settings, gradient accumulation, gradient checkpointing, epochs,
on the CPU (CI has no GPU; CPU autocast supports bf16 and fp16)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import aurora
from suites.backbones import build_backbone
from suites.benchmarks import BENCHMARKS
from suites.engine.device import DeviceError, Precision, resolve_device, resolve_precision
from suites.engine.loop import (
    Objective,
    TrainConfig,
    enable_checkpointing,
    fit,
    index_batches,
    make_optimizer,
    train_step,
)
from suites.orchestration.trial import TrialSpec, run_trial


class Regression(Objective):
    """Mean squared error of a linear model on fixed data: its gradient over a batch is the mean of its
    micro-batches' gradients, so accumulation must reproduce the full batch exactly."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def batches(self, data, batch_size, rng):
        return index_batches(len(self.x), batch_size, rng)

    def items(self, data) -> int:
        return len(self.x)

    def losses(self, model, data, idx, gen, hooks=None) -> dict:
        idx = torch.as_tensor(idx)
        loss = ((model(self.x[idx]).squeeze(-1) - self.y[idx]) ** 2).mean()
        return {"loss": loss, "mse": loss.detach()}


def _regression(n: int = 16):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, generator=gen), torch.randn(n, generator=gen)
    torch.manual_seed(0)
    return nn.Linear(3, 1), Regression(x, y)


def test_accumulated_micro_batches_step_like_the_whole_batch():
    model, objective = _regression()
    twin = copy.deepcopy(model)
    cfg = TrainConfig(lr=0.1, warmup=1, weight_decay=0.0)
    opt, _ = make_optimizer(list(model.parameters()), cfg)
    twin_opt, _ = make_optimizer(list(twin.parameters()), cfg)
    gen = torch.Generator().manual_seed(0)
    idx = np.arange(8)
    whole = train_step(model, objective, None, [idx], gen, opt)
    parts = train_step(twin, objective, None, [idx[:4], idx[4:]], gen, twin_opt)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q)
    assert parts["mse"] == pytest.approx(float(whole["mse"]), rel=1e-6)  # equal halves: the mean of the means


def test_epochs_set_the_number_of_steps():
    model, objective = _regression(24)
    stats = fit(model, objective, None, TrainConfig(epochs=2, batch_size=8, warmup=1, eval_every=100))
    assert stats["steps"] == 2 * 3
    stats = fit(model, objective, None, TrainConfig(epochs=1, batch_size=4, grad_accumulation=2, warmup=1))
    assert stats["steps"] == 3  # an optimizer step consumes batch_size x grad_accumulation items


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_keeps_fp32_weights_and_learns(precision):
    model, objective = _regression()
    before = float(objective.losses(model, None, np.arange(16), None)["loss"].detach())
    fit(model, objective, None, TrainConfig(steps=30, batch_size=16, lr=0.05, warmup=1, precision=precision))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert float(objective.losses(model, None, np.arange(16), None)["loss"].detach()) < before


def test_gradient_checkpointing_gives_the_same_gradients():
    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        backbone = build_backbone("test-tiny")
        torch.manual_seed(1)
        aurora.create_method("aurora", rank=4).apply(backbone.model)
        with torch.no_grad():  # V starts at zero: move it so every delta carries a gradient
            backbone.model.aurora_shared.V.weight.normal_(0, 0.1)
        if checkpointing:
            enable_checkpointing(backbone.model)
        bench = BENCHMARKS.get("test-tiny")(loss={"itm_negatives": "random"})
        train, _, _ = bench.load()
        objective = bench.objective(backbone)
        backbone.model.train()
        batch = objective.load(train, next(objective.batches(train, 8, np.random.default_rng(0))), None)
        objective.losses(backbone.model, train, batch, torch.Generator().manual_seed(0))["loss"].backward()
        return {n: p.grad.clone() for n, p in backbone.model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


@pytest.mark.slow
def test_a_trial_on_cpu_in_bf16(tmp_path):
    spec = TrialSpec(method="aurora", benchmark="test-tiny", output_dir=str(tmp_path), method_options={"rank": 4},
                     train={"steps": 2, "batch_size": 8, "warmup": 1, "eval_every": 2, "device": "cpu",
                            "precision": "bf16", "grad_accumulation": 2})
    record = run_trial(spec)
    assert record.device == "cpu" and record.precision == "bf16" and "GPU" not in record.hardware
    assert np.isfinite(record.primary) and np.isfinite(record.train_stats["loss"])


def test_device_and_precision_settings():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_precision(None, torch.device("cpu")) == "fp32"
    assert Precision("fp32", torch.device("cpu")).scaler.is_enabled() is False
    with pytest.raises(DeviceError, match="valid: auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="sees no CUDA GPU"):
            resolve_device("cuda:0")
    with pytest.raises(DeviceError, match="unknown precision"):
        resolve_precision("fp8", torch.device("cpu"))


@pytest.mark.parametrize("bad", [{"steps": 0}, {"steps": "ten"}, {"eval_every": 0}, {"batch_size": -1},
                                 {"lr": float("nan")}, {"epochs": 0}, {"grad_accumulation": 1.5},
                                 {"precision": "fp8"}, {"device": "gpu"}, {"gradient_checkpointing": "yes"}])
def test_bad_training_settings_fail_when_built(bad):
    with pytest.raises(ValueError, match="train\\."):
        TrainConfig(**bad)


def test_loaded_batches_do_not_depend_on_the_number_of_workers():
    """Random frames are drawn per batch from (seed, batch number), never from a worker's own state."""
    from suites.engine.data import load_batches

    bench = BENCHMARKS.get("proxy-msrvtt")(train_clips=12, val_clips=3, test_clips=3, n_frames=2)
    train, _, _ = bench.load()
    objective = bench.objective(build_backbone("test-tiny"))

    def batches(workers: int) -> list[dict]:
        return list(load_batches(objective, train, 4, 6, np.random.default_rng(0), seed=3, num_workers=workers))

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 6
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], msg=key)
    assert not all(torch.equal(a["pixels"], b["pixels"]) for a, b in zip(serial, batches(0)[1:] + serial[:1]))


@pytest.mark.slow
def test_a_trial_with_loading_workers(tmp_path):
    spec = TrialSpec(method="lora", benchmark="test-tiny", output_dir=str(tmp_path),
                     train={"steps": 3, "batch_size": 8, "warmup": 1, "eval_every": 3, "num_workers": 2})
    serial = run_trial(TrialSpec(**{**spec.__dict__, "train": {**spec.train, "num_workers": 0}}))
    assert run_trial(spec).metrics == serial.metrics  # the same batches, whoever loads them


@pytest.mark.parametrize("name, options", [("aurora", {"rank": 4}), ("aurora", {"rank": 4, "core": "cp"}),
                                           ("lora", {"r": 2}), ("loha", {"r": 2}), ("ia3", {})])
def test_merged_evaluation_equals_the_unmerged_model_and_restores_it(name, options):
    """Evaluation runs on W + dW computed once; the outputs are the method's own, and training resumes on
    exactly the weights it left."""
    from aurora.api import merged

    backbone = build_backbone("test-tiny")
    torch.manual_seed(1)
    method = aurora.create_method(name, **options)
    model = method.apply(backbone.model)
    with torch.no_grad():  # move every trainable tensor off its identity start
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    bench = BENCHMARKS.get("test-tiny")()
    _, _, test = bench.load()
    model.eval()
    plain = bench.evaluate(model, backbone, test)
    with merged(method, model):
        assert any(not torch.equal(before[n], p) for n, p in model.state_dict().items() if n in before)
        fused = bench.evaluate(model, backbone, test)
    for n, p in model.state_dict().items():
        torch.testing.assert_close(p, before[n], rtol=0, atol=0, msg=n)
    assert fused == pytest.approx(plain, abs=1e-9)


def test_itm_chunks_do_not_change_the_scores(monkeypatch):
    from suites.tasks import retrieval

    backbone = build_backbone("test-tiny")
    _, _, test = BENCHMARKS.get("test-tiny")().load()
    whole = retrieval.evaluate(backbone.model, backbone, test, k_test=4)
    monkeypatch.setattr(retrieval, "ITM_TOKENS_PER_CHUNK", 3 * 5)  # 3 pairs of 5 tokens per chunk
    assert retrieval.evaluate(backbone.model, backbone, test, k_test=4) == pytest.approx(whole, abs=1e-9)


@pytest.mark.parametrize("method, options, task", [
    ("aurora", {"rank": 4}, {}), ("full_finetune", {}, {}),
    # the momentum model and the feature queue are training state too
    ("aurora", {"rank": 4}, {"loss": {"momentum": {"queue_size": 12}}}),
])
def test_a_killed_trial_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path, method, options, task):
    from safetensors.torch import load_file

    from suites.engine import state

    train = {"steps": 4, "batch_size": 8, "warmup": 1, "eval_every": 2, "checkpoints": True}
    whole = run_trial(TrialSpec(method=method, benchmark="test-tiny", method_options=options,
                                output_dir=str(tmp_path / "whole"), train=train, benchmark_options=task))
    spec = TrialSpec(method=method, benchmark="test-tiny", method_options=options, output_dir=str(tmp_path / "cut"),
                     train=train, benchmark_options=task)

    def killed(row, score, snapshot):  # the process dies right after its checkpoint at step 2
        state.save(snapshot, tmp_path)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        run_trial(spec, on_validation=killed)
    resumed = run_trial(spec, resume=state.load(tmp_path))
    assert resumed.train_stats["resumed_from_step"] == 2
    assert resumed.metrics == whole.metrics and resumed.history == whole.history
    a, b = load_file(whole.weights), load_file(resumed.weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_trial_on_the_cpu_flushes_denormals():
    """x86 CPUs compute on denormal floats in a slow path (random BLIP-base's gradients reach them): a trial's
    device resolution turns flushing on, as GPUs' fast kernels do."""
    from suites.orchestration.trial import compute_on

    torch.set_flush_denormal(False)  # an earlier trial in this process may have turned it on
    denormal = torch.tensor([1e-39])  # made while flushing is off: with it on, even the constant would be 0
    assert float(denormal * 1.0) > 0
    compute_on(TrainConfig(device="cpu"))
    assert float(denormal * 1.0) == 0.0
