"""A tiny suite against a real ``mlflow server`` on loopback and a real Ray head (``ray start --head``)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from suites.orchestration.runner import run_suite
from suites.orchestration.trial import TrialSpec

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TINY = dict(train={"steps": 3, "batch_size": 8, "warmup": 1, "eval_every": 2})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc, timeout: float = 90) -> None:
    start = time.time()
    while time.time() - start < timeout:
        assert proc.poll() is None, "mlflow server exited"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "art")],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_for(uri + "/health", proc)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture
def ray_head(monkeypatch):
    """A Ray head with its own temp dir, so stopping it touches no other Ray instance on the machine
    (``ray stop`` would stop them all). Token authentication is off for this loopback-only head and its
    driver alike (a real cluster shares its token as Ray's token-auth guide says)."""
    import ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths have a length limit
    port = _free_port()
    subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2", f"--temp-dir={temp}",
                    "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()  # the driver's connection; the next in-process suite starts its own local Ray
        subprocess.run(["pkill", "-f", temp], check=False)
        for _ in range(20):  # the GCS server can outlive SIGTERM: wait a little, then SIGKILL what is left
            if subprocess.run(["pgrep", "-f", temp], capture_output=True).returncode != 0:
                break
            time.sleep(0.5)
        else:
            subprocess.run(["pkill", "-9", "-f", temp], check=False)
        shutil.rmtree(temp, ignore_errors=True)


def test_suite_on_a_ray_head_and_an_mlflow_server(tmp_path, mlflow_server, ray_head):
    import ray
    from mlflow.tracking import MlflowClient

    ray.shutdown()  # an earlier test may have left this process connected to its local Ray
    specs = [TrialSpec(method=m, benchmark="test-tiny", **TINY) for m in ("frozen", "aurora")]
    records, failures = run_suite(specs, "cluster", output_dir=tmp_path, tracking_uri=mlflow_server,
                                  address=ray_head)
    assert not failures and len(records) == 2
    port = ray_head.rsplit(":", 1)[1]  # the trials ran on the head, not on a new local Ray
    assert ray.get_runtime_context().gcs_address.rsplit(":", 1)[1] == port

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("aurora-bench")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'trial'")
    assert sorted(r.data.tags["trial"] for r in runs) == sorted(s.name for s in specs)
    assert all(r.info.status == "FINISHED" and "itm_r_mean" in r.data.metrics for r in runs)
    trained = next(r for r in runs if r.data.tags["method"] == "aurora")
    names = {a.path for a in client.list_artifacts(trained.info.run_id)}
    assert {"record.json", "trained.safetensors"} <= names  # uploaded through the server
