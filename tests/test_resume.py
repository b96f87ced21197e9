"""Kill a running suite (SIGKILL: no clean-up at all) and resume it: no finished trial is rerun or lost."""

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from suites.orchestration.runner import run_suite
from suites.orchestration.trial import TrialSpec

pytestmark = pytest.mark.slow

TINY = dict(suite="resume-test", train={"steps": 3, "batch_size": 8, "warmup": 1, "eval_every": 2})
METHODS = ("frozen", "lora", "aurora")


def specs() -> list[TrialSpec]:
    """Run one at a time; the last trains long enough (a few hundred tiny steps) that the kill lands before
    it finishes, however fast the machine."""
    out = [TrialSpec(method=m, benchmark="test-tiny", **TINY) for m in METHODS]
    out[-1].train = {**out[-1].train, "steps": 300}
    return out


DRIVER = """
import sys
from tests.test_resume import specs
from suites.orchestration.runner import run_suite
run_suite(specs(), "resume-test", output_dir=sys.argv[1], tracking_uri=sys.argv[2], cpus_per_trial=2,
          max_concurrent=1)
"""


def _trial_runs(uri: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=["aurora-bench"], filter_string="tags.kind = 'trial'",
                              output_format="pandas")


def _finished_trials(db: Path) -> int:
    """Finished trial runs in the sqlite store, read directly: milliseconds, where an MLflow client takes
    seconds to start (long enough on a fast machine for the whole suite to finish unseen)."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=1)) as con:
        try:
            return con.execute("SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                               "WHERE t.key = 'kind' AND t.value = 'trial' AND r.status = 'FINISHED'").fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet, or locked by the writer
            return 0


def _wait_for_first_finished_trial(db: Path, proc, timeout: float = 600) -> None:
    start = time.time()
    while time.time() - start < timeout:
        assert proc.poll() is None, "the suite ended before it could be killed"
        if _finished_trials(db) >= 1:
            return
        time.sleep(0.1)
    raise TimeoutError("no trial finished")


def test_kill_and_resume_loses_no_finished_trial(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    root = Path(__file__).resolve().parent.parent
    # the store named explicitly: an earlier test's mlflow.set_tracking_uri leaves MLFLOW_TRACKING_URI set
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), uri], start_new_session=True, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_first_finished_trial(tmp_path / "mlflow.db", proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray instance and its workers
        proc.wait()
    before = _trial_runs(uri)
    kept = dict(zip(before.loc[before["status"] == "FINISHED", "tags.trial"],
                    before.loc[before["status"] == "FINISHED", "run_id"]))
    assert 1 <= len(kept) < len(METHODS)

    records, failures = run_suite(specs(), "resume-test", output_dir=tmp_path, tracking_uri=uri, cpus_per_trial=1,
                                  resume=True)

    assert not failures and len(records) == len(METHODS)
    counts = re.findall(r"^\[(\d+)/(\d+) done", capsys.readouterr().out, re.M)
    assert counts and counts[-1] == (str(len(METHODS)), str(len(METHODS)))  # counted over the whole suite
    after = _trial_runs(uri)
    assert sorted(after["tags.trial"]) == sorted(s.name for s in specs())  # each trial exactly once
    assert (after["status"] == "FINISHED").all()
    for name, run_id in kept.items():  # finished before the kill: kept, not rerun
        assert after.loc[after["tags.trial"] == name, "run_id"].item() == run_id
    suites = mlflow.search_runs(experiment_names=["aurora-bench"], filter_string="tags.kind = 'suite'",
                                output_format="pandas")
    assert len(suites) == 1 and suites["status"].item() == "FINISHED"


def test_resume_refuses_a_changed_spec(tmp_path):
    spec = TrialSpec(method="frozen", benchmark="test-tiny", **TINY)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_suite([spec], "resume-test", output_dir=tmp_path, tracking_uri=uri)
    changed = TrialSpec(method="frozen", benchmark="test-tiny", **TINY, benchmark_options={"k_test": 3})
    with pytest.raises(ValueError, match="different spec"):
        run_suite([changed], "resume-test", output_dir=tmp_path, tracking_uri=uri, resume=True)
