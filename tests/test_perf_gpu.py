"""The GPU benchmark's script in its tiny CPU mode: the report's layout, and the one-line exit without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from suites.perf import gpu

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> tuple[dict, dict]:
    """(what main returned, what it wrote) for a tiny run of every default method."""
    out = tmp_path_factory.mktemp("bench") / "bench_gpu.json"
    returned = gpu.main(["--tiny", "--output", str(out)])
    return returned, json.loads(out.read_text())


def test_tiny_report_layout(tiny_report):
    returned, written = tiny_report
    assert written == json.loads(json.dumps(returned))
    assert written["mode"] == "tiny"
    assert {"gpu", "torch", "cuda"} <= set(written["hardware"])
    assert written["config"]["backbone"] == "test-tiny" and written["config"]["device"] == "cpu"
    assert written["config"]["attention"] == "fused"
    assert written["flops"]["counted_by"].startswith("torch.utils.flop_counter.FlopCounterMode")
    assert [r["method"] for r in written["rows"]] == list(gpu.METHODS)
    assert set(written["targets"]) == {name for name, *_ in gpu.TARGETS}
    for target in written["targets"].values():
        assert {"what", "value", "target", "pass", "note"} <= set(target)
        assert target["pass"] in (True, False, None)


def test_eager_attention_is_measured_when_asked(tmp_path, monkeypatch):
    """``--attention eager`` runs the methods on transformers' eager layers, and the report says which ran."""
    from suites.backbones.attention import FUSED

    seen = []
    measure = gpu.measure_training

    def recorded(training, cfg):
        seen.append({type(m) for m in training.model.modules() if type(m) in FUSED or type(m) in FUSED.values()})
        return measure(training, cfg)

    monkeypatch.setattr(gpu, "measure_training", recorded)
    report = gpu.main(["--tiny", "--methods", "lora", "--attention", "eager", "--output", str(tmp_path / "b.json")])
    assert report["config"]["attention"] == "eager" and "error" not in report["rows"][0]
    assert seen == [set(FUSED)]


def test_every_method_trains_and_evaluates(tiny_report):
    _, written = tiny_report
    for row in written["rows"]:
        assert "error" not in row, row
        assert row["eval"]["seconds"] > 0
        assert {"train", "eval", "source"} <= set(row["peak_memory_mb"])
        if row["method"] == "frozen":  # trains nothing: evaluation only
            assert row["train"] is None
            continue
        train = row["train"]
        assert train["pairs_per_s"] > 0 and train["step_time_s"] > 0 and train["flops_per_step"] > 0
        loading = train["loading"]
        assert loading["workers"] >= 1 and loading["fed_step_time_s"] > 0
        assert loading["busy_share"] == pytest.approx(loading["device_step_time_s"] / loading["fed_step_time_s"])
        assert train["mfu"] is None and train["mfu_note"] == "no GPU"


def test_tiny_targets_have_values_or_reasons(tiny_report):
    _, written = tiny_report
    targets = written["targets"]
    assert targets["aurora_lora_throughput"]["value"] > 0 and targets["busy_share"]["value"] > 0
    mfu = targets["full_finetune_mfu"]
    assert (mfu["value"], mfu["pass"], mfu["note"]) == (None, None, "no GPU")
    assert targets["aurora_full_peak_memory"]["value"] is None and targets["aurora_full_peak_memory"]["note"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the benchmark would run")
def test_without_gpu_and_tiny_exits_with_one_line(tmp_path):
    out = tmp_path / "bench_gpu.json"
    done = subprocess.run([sys.executable, "-m", "suites.perf.gpu", "--output", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0] and "--tiny" in lines[0], done.stderr
    assert not out.exists()


@pytest.mark.parametrize(("name", "expected"), [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA L40S", 362e12), ("NVIDIA A10G", 70e12),
    ("NVIDIA H200 NVL", None), ("NVIDIA GeForce RTX 4090", None),
])
def test_peak_flops_by_device_name(monkeypatch, name, expected):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    peak, note = gpu.peak_flops(torch.device("cuda"), "bf16", None)
    assert peak == expected
    assert expected is not None or "--peak-tflops" in note
    assert gpu.peak_flops(torch.device("cuda"), "bf16", 100.0) == (100e12, "--peak-tflops")
    assert gpu.peak_flops(torch.device("cpu"), "bf16", None) == (None, "no GPU")
