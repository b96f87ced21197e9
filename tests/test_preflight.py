"""A suite that cannot run as asked stops in the driver, before Ray or any pretraining: one line, exit 2."""

from __future__ import annotations

import pytest
import torch

from suites.cli import main

SPEC = """name: preflight
benchmarks: [{bench}]
backbone: {backbone}
methods: {{frozen: {{}}}}
train: {{steps: 1, batch_size: 2{train}}}
benchmark_options: {options}
"""


def write_spec(tmp_path, bench="test-tiny", backbone="test-tiny", train="", options="{}"):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(bench=bench, backbone=backbone, train=train, options=options))
    return str(path)


@pytest.mark.parametrize("case, flags, needle", [
    ("gpus", ["--gpus-per-trial", "0.5"], "asks for 1 GPU(s) per trial, but this machine has 0"),
    ("gpus", ["--gpus-per-trial", "1", "--processes-per-trial", "2"], "x 2 processes asks for 2 GPU(s) per trial"),
    ("cpus", ["--processes-per-trial", "64"], "64 processes x 1 CPUs per trial, plus its driver, need more"),
    ("flags", ["--processes-per-trial", "0"], "processes_per_trial must be a whole number >= 1"),
    ("device", [], "needs a GPU reserved for the trial"),
    ("data", [], "missing annotation file"),
    ("checkpoint", [], "has no config.json"),
])
def test_a_suite_that_cannot_run_stops_before_any_trial(tmp_path, capsys, case, flags, needle):
    if case == "gpus" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec = {
        "gpus": {}, "cpus": {}, "flags": {},
        "device": {"train": ", device: cuda"},
        "data": {"bench": "coco", "options": f"{{coco: {{data_root: {tmp_path / 'none'}}}}}"},
        "checkpoint": {"backbone": str(tmp_path / "no-checkpoint")},
    }[case]
    spec = write_spec(tmp_path, **spec)
    code = main(["suite", spec, "--output", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "out" / "ray").exists()  # Ray never started
