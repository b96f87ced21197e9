"""What MLflow shows of a suite: runs named method first, the experiment opening on its runs, and a real
``mlflow server`` on loopback serving both; resume matching trials by their ``trial`` tag, older runs by name."""

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from suites.cli import mlflow_ui
from suites.orchestration.runner import _resume
from suites.orchestration.tracking import EXPERIMENT_KIND_TAG, Tracker
from suites.orchestration.trial import TrialSpec
from suites.record import TrialRecord

LORA = TrialSpec(method="lora", benchmark="proxy-coco", seed=0, method_options={"r": 4, "alpha": 8}, suite="s")
VARIANT = TrialSpec(method="aurora", benchmark="proxy-coco", seed=1, method_options={"rank": 8, "ice": False},
                    label="aurora-no-ice", suite="s")


def _record(spec: TrialSpec) -> TrialRecord:
    return TrialRecord(
        name=spec.name, row=spec.row, spec=dataclasses.asdict(spec), method_config=spec.method_options,
        train_config={"steps": 3}, tier="proxy", task="retrieval", primary_metric="itm_r_mean", backbone="fixture",
        params={"method_trainable": 10}, metrics={"itm_r_mean": 50.0 + spec.seed}, wall_time_s=1.0)


def _store(tmp_path) -> tuple[Tracker, str]:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_dir=tmp_path / "mlartifacts")
    parent = tracker.start_suite("s", {})
    for spec in (LORA, VARIANT):
        tracker.log_trial(parent, _record(spec))
    return tracker, parent


def test_runs_are_named_method_first_and_tagged_with_their_trial(tmp_path):
    tracker, parent = _store(tmp_path)
    runs = {r.info.run_name: r.data.tags for r in tracker.trial_runs(parent)}
    assert set(runs) == {"lora r=4 alpha=8 · seed0 · proxy-coco", "aurora-no-ice · seed1 · proxy-coco"}
    assert runs["lora r=4 alpha=8 · seed0 · proxy-coco"]["trial"] == "proxy-coco--lora--seed0"
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_resume_matches_runs_by_their_trial_tag_and_older_runs_by_name(tmp_path):
    tracker, parent = _store(tmp_path)
    older = next(r for r in tracker.trial_runs(parent) if r.data.tags["method"] == "aurora-no-ice")
    # a run logged before the tag existed: named by its trial, untagged
    tracker.client.delete_tag(older.info.run_id, "trial")
    tracker.client.set_tag(older.info.run_id, "mlflow.runName", VARIANT.name)
    records, stopped, to_run = _resume(tracker, parent, [LORA, VARIANT])
    assert sorted(r.name for r in records) == sorted([LORA.name, VARIANT.name]) and to_run == [] and stopped == []


def test_a_suite_closes_with_its_store_the_report_and_the_ui_commands(tmp_path):
    import argparse

    from suites.cli import _next_steps

    tracker, _ = _store(tmp_path)
    args = argparse.Namespace(output=str(tmp_path), tracking_uri=None)
    store, report, ui = _next_steps(tracker.uri, args)
    assert store == f"MLflow store: {tracker.uri}"
    assert report == f"tables and plots: aurora-bench report --output {tmp_path}"
    assert ui == (f"browse the runs: mlflow ui --backend-store-uri {tracker.uri} --port 5000   then open "
                  f"http://127.0.0.1:5000/#/experiments/{tracker.experiment_id}/runs?workflowType=machine_learning")


def test_an_http_store_is_its_own_ui():
    command, url = mlflow_ui("http://head:5000/", "7")
    assert command is None and url == "http://head:5000/#/experiments/7/runs?workflowType=machine_learning"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, body: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode()


@pytest.fixture
def server(tmp_path):
    """``mlflow server`` on a free loopback port over a store with two trial runs, started as ``mlflow_ui``
    tells a person to (its command, its port); skipped if it does not answer within 90 s (about 10 s on a
    quiet 2-core machine)."""
    tracker, _ = _store(tmp_path)
    port = _free_port()
    command, url = mlflow_ui(tracker.uri, tracker.experiment_id, port)
    args = command.split()[1:]  # "mlflow ui ...", run with this interpreter's mlflow
    # no job runner: it starts a dozen task consumers this test has no use for
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", *args, "--host", "127.0.0.1", "--workers", "1"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own process group: the server and its workers
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.skip(f"mlflow server exited: {proc.stderr.read().decode()[-300:]}")
            try:
                if _get(f"{base}/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.skip("mlflow server did not answer within 90 s")
        yield base, url, tracker.experiment_id
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a store in tmp_path: nothing to shut down gracefully
        proc.wait()


def test_a_real_mlflow_server_opens_the_experiment_on_its_runs(server):
    base, url, experiment_id = server
    assert url.startswith(f"{base}/#/experiments/{experiment_id}/runs?")
    status, page = _get(url.split("#")[0])  # the hash is the browser's: the server sees the page
    assert status == 200 and '<div id="root"' in page
    # the served UI knows the address's route and reads its workflowType (machine learning: runs, not traces)
    bundle = re.search(r'src="(\.?/?static-files/static/js/main\.[0-9a-f]+\.js|[^"]*static/js/main\.[0-9a-f]+\.js)"',
                       page)
    assert bundle, "no main bundle in the UI's page"
    script = _get(f"{base}/{bundle.group(1).lstrip('./')}")[1]
    assert '"/experiments/:experimentId/runs"' in script and 'get("workflowType")' in script
    assert '"machine_learning"' in script
    _, experiment = _get(f"{base}/ajax-api/2.0/mlflow/experiments/get?experiment_id={experiment_id}")
    tags = {t["key"]: t["value"] for t in json.loads(experiment)["experiment"]["tags"]}
    assert tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    _, found = _get(f"{base}/ajax-api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id],
                                                               "filter": "tags.kind = 'trial'"})
    runs = {r["info"]["run_name"]: {t["key"]: t["value"] for t in r["data"]["tags"]}
            for r in json.loads(found)["runs"]}
    assert runs["lora r=4 alpha=8 · seed0 · proxy-coco"]["trial"] == "proxy-coco--lora--seed0"
    assert runs["aurora-no-ice · seed1 · proxy-coco"]["trial"] == "proxy-coco--aurora-no-ice--seed1"
