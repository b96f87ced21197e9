"""`aurora-bench eval` on a run it cannot evaluate, and `eval` or `report` on a folder without a store: one line,
exit 2, saying what is there instead.

The store is filled in-process (a trial run by ``run_trial`` and logged as the driver logs it), without Ray.
"""

from __future__ import annotations

import dataclasses

import pytest

from suites.cli import main
from suites.orchestration.tracking import Tracker, tracking_uri
from suites.orchestration.trial import TrialSpec, run_trial
from suites.record import FailedTrial, StoppedTrial

TRAIN = {"steps": 2, "batch_size": 8, "warmup": 1, "eval_every": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An output folder whose store holds a suite run, a finished trial, the same trial logged without a
    checksum (as older versions did), a failed, a stopped and a still-running trial."""
    out = tmp_path_factory.mktemp("eval-store")
    spec = TrialSpec(method="lora", benchmark="test-tiny", output_dir=str(out), train=TRAIN, suite="reliability")
    record = run_trial(spec)
    tracker = Tracker(tracking_uri(out), artifact_dir=out / "mlartifacts")
    suite = tracker.start_suite("reliability", {})
    runs = {"suite": suite, "finished": tracker.log_trial(suite, record),
            "unchecked": tracker.log_trial(suite, dataclasses.replace(record, weights_sha256="")),
            "overwritten": tracker.log_trial(suite, record)}
    failed = FailedTrial(spec=record.spec, name="test-tiny--broken--seed0", row="broken",
                         error="Traceback (most recent call last):\n  ...\nValueError: non-finite loss at step 3")
    runs["failed"] = tracker.log_failure(suite, failed)
    stopped = StoppedTrial(spec=record.spec, name="test-tiny--slow--seed0", row="slow", stopped_early="asha", step=4)
    runs["stopped"] = tracker.log_stopped(suite, stopped)
    runs["running"] = tracker.client.create_run(tracker.experiment_id, run_name="test-tiny--killed--seed0",
                                                tags={"kind": "trial"}).info.run_id
    return out, runs


def eval_error(capsys, out, run_id: str) -> str:
    code = main(["eval", "--run-id", run_id, "--output", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("aurora-bench: error: "), err
    return err[0]


def test_a_finished_trial_is_re_evaluated(store, capsys):
    out, runs = store
    assert main(["eval", "--run-id", runs["finished"], "--output", str(out)]) == 0
    assert "re-evaluated without training" in capsys.readouterr().out


def test_an_unknown_run_id_lists_finished_trial_runs(store, capsys):
    out, runs = store
    line = eval_error(capsys, out, "0123456789abcdef")
    assert "no run '0123456789abcdef' in sqlite:///" in line
    assert "newest finished trial runs: " in line and runs["finished"] in line
    assert runs["failed"] not in line and runs["suite"] not in line


@pytest.mark.parametrize(("kind", "needle"), [
    ("failed", "FAILED (ValueError: non-finite loss at step 3) and saved no weights to evaluate"),
    ("stopped", "was stopped early by asha at step 4"),
    ("running", "is RUNNING, not finished"),
    ("suite", "is a suite run, not a trial"),
])
def test_a_run_with_nothing_to_evaluate_says_what_it_is(store, capsys, kind, needle):
    out, runs = store
    line = eval_error(capsys, out, runs[kind])
    assert f"run {runs[kind]} (" in line and needle in line


def test_a_folder_without_a_store_is_not_given_one(tmp_path, capsys):
    line = eval_error(capsys, tmp_path, "0123456789abcdef")
    assert f"no MLflow store at {tmp_path.resolve() / 'mlflow.db'}" in line
    assert not (tmp_path / "mlflow.db").exists()


def test_report_of_a_folder_without_a_store_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "typo"
    assert main(["report", "--output", str(out)]) == 2
    line = capsys.readouterr().err.strip()
    assert line == (f"aurora-bench: error: no MLflow store at {out.resolve() / 'mlflow.db'}; pass the --output "
                    "folder (or --tracking-uri) of the suite that logged the runs")
    assert not out.exists()


@pytest.mark.parametrize("run", ["finished", "unchecked"])
def test_a_truncated_weights_artifact_is_one_line(store, capsys, run):
    """With the logged checksum the file fails its check; a run logged without one fails to read it."""
    out, runs = store
    tracker = Tracker(tracking_uri(out), create=False)
    artifact = tracker.client.get_run(runs[run]).info.artifact_uri.removeprefix("file://") + "/trained.safetensors"
    with open(artifact, "rb") as f:
        data = f.read()
    with open(artifact, "wb") as f:
        f.write(data[: len(data) // 2])
    line = eval_error(capsys, out, runs[run])
    assert "trained.safetensors is damaged" in line and "rerun the trial" in line


def test_a_missing_weights_artifact_is_one_line(store, capsys):
    out, runs = store
    tracker = Tracker(tracking_uri(out), create=False)
    folder = tracker.client.get_run(runs["unchecked"]).info.artifact_uri.removeprefix("file://")
    import os

    os.remove(f"{folder}/trained.safetensors")
    line = eval_error(capsys, out, runs["unchecked"])
    assert "has no saved weights (trained.safetensors): rerun the trial" in line


def test_a_weights_artifact_with_other_bytes_of_the_same_size_is_one_line(store, capsys):
    """Only the logged checksum can tell: the file still reads as weights of the right shapes."""
    out, runs = store
    tracker = Tracker(tracking_uri(out), create=False)
    artifact = tracker.client.get_run(runs["overwritten"]).info.artifact_uri.removeprefix("file://")
    with open(f"{artifact}/trained.safetensors", "r+b") as f:
        f.seek(-64, 2)
        f.write(bytes(64))
    line = eval_error(capsys, out, runs["overwritten"])
    assert "trained.safetensors is damaged" in line
