"""The tracking store a suite logs to: an explicit URI, else the user's $MLFLOW_TRACKING_URI, else sqlite under
the output folder, never a URI that ``mlflow.set_tracking_uri`` (reports, tests) left in the environment."""

import subprocess
import sys

import mlflow

from suites.orchestration.tracking import tracking_uri


def test_a_uri_left_behind_by_mlflow_set_tracking_uri_is_not_used(tmp_path):
    other = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    mlflow.set_tracking_uri(other)  # also writes MLFLOW_TRACKING_URI into os.environ
    assert tracking_uri(tmp_path / "out") == f"sqlite:///{(tmp_path / 'out' / 'mlflow.db').resolve()}"
    assert tracking_uri(tmp_path / "out", "http://127.0.0.1:5000") == "http://127.0.0.1:5000"  # explicit wins


def test_the_users_environment_variable_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking_uri(tmp_path) == "http://tracking.example:5000"


def test_the_environment_is_restored_between_tests():
    """After the first test above, the autouse fixture in conftest.py put the environment back, so a
    subprocess started now (a suite driver, say) does not inherit the other store."""
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('MLFLOW_TRACKING_URI', ''))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert "other" not in out
