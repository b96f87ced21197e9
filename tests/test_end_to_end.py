"""One suite through real Ray Tune and a real MLflow store, on a tiny config, then the LaTeX report."""

import json

import mlflow
import pytest

from reports.build import write_report
from reports.frame import frame
from reports.store import load_records
from suites.cli import ranking_files
from suites.orchestration.runner import run_suite
from suites.orchestration.trial import TrialSpec

pytestmark = pytest.mark.slow

# checkpoints on: every trained trial saves its training state at step 2 as a Ray Tune checkpoint
TINY = dict(train={"steps": 3, "batch_size": 8, "warmup": 1, "eval_every": 2, "checkpoints": True})


def test_suite_logs_every_trial_and_survives_a_failure(tmp_path, capsys):
    specs = [TrialSpec(method=m, benchmark="test-tiny", seed=s, **TINY)
             for m in ("frozen", "lora", "aurora") for s in (0, 1)]
    # a trial that raises inside the worker: recorded as failed, the others finish
    specs.append(TrialSpec(method="lora", benchmark="test-tiny", seed=9, method_options={"target_modules": "nothing"},
                           **TINY))
    # a trial that diverges (an absurd learning rate): its non-finite loss fails it, after one retry
    diverging = {**TINY, "train": {**TINY["train"], "lr": 1e30}}
    specs.append(TrialSpec(method="full_finetune", benchmark="test-tiny", seed=9, **diverging))
    records, failures = run_suite(specs, "e2e", output_dir=tmp_path, cpus_per_trial=1, retries=1,
                                  summarize=ranking_files)

    assert len(records) == 6 and len(failures) == 2
    reasons = {f.name: f.reason for f in failures}
    assert "TargetingError" in reasons["test-tiny--lora--seed9"]
    assert "non-finite loss" in reasons["test-tiny--full_finetune--seed9"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = mlflow.search_runs(experiment_names=["aurora-bench"], filter_string="tags.kind = 'trial'",
                              output_format="pandas") if mlflow.set_tracking_uri(uri) is None else None
    assert len(runs) == 8  # a retried trial is logged once
    assert (runs["status"] == "FAILED").sum() == 2
    finished = runs[runs["status"] == "FINISHED"]
    for col in ("metrics.itc_r_mean", "metrics.itm_r_mean", "metrics.params_method_trainable",
                "metrics.wall_time_s", "metrics.peak_rss_mb", "metrics.orchestration_overhead_s"):
        assert finished[col].notna().all(), col
    trained = finished[finished["tags.method"] != "frozen"]
    assert trained["metrics.itm_loss"].notna().all()
    assert trained["metrics.epoch_val_itc_r_mean"].notna().all()  # per-epoch curve logged

    # artifacts (record + trained weights) live under the output folder, not in the working directory
    client = mlflow.tracking.MlflowClient(uri)
    run_id = trained["run_id"].iloc[0]
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"record.json", "trained.safetensors"} <= names
    assert (tmp_path / "mlartifacts").is_dir()

    # the saved weights re-evaluate to exactly the logged metrics, without training
    from suites.cli import main

    assert main(["eval", "--run-id", run_id, "--output", str(tmp_path), "--json"]) == 0
    logged = client.get_run(run_id).data.metrics
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["itm_r_mean"] == logged["itm_r_mean"] and again["itc_r_mean"] == logged["itc_r_mean"]

    # the mid-trial training states went to Ray Tune's storage, one kept per trained trial
    saved = list((tmp_path / "ray").rglob("training_state.pt"))
    assert len(saved) >= 4, saved  # lora and aurora, two seeds each

    # the ranking is stored on the suite run
    suite = mlflow.search_runs(experiment_names=["aurora-bench"], filter_string="tags.kind = 'suite'",
                               output_format="pandas")
    assert {"ranking.txt", "ranking.csv"} <= {a.path for a in client.list_artifacts(suite["run_id"].item())}

    df = frame(load_records(uri))
    assert sorted(df["method"].unique()) == ["aurora", "frozen", "lora"]
    paths = write_report(tmp_path, uri)
    text = paths[0].read_text()
    assert "\\toprule" in text and "\\textbf{" in text and "Aurora (R=" in text  # rows by their labels


def test_trials_of_two_suites_never_share_a_weights_file(tmp_path):
    spec = TrialSpec(method="lora", benchmark="test-tiny", seed=0, **TINY)
    first, _ = run_suite([spec], "one", output_dir=tmp_path)
    second, _ = run_suite([TrialSpec(**{**spec.__dict__, "method_options": {"r": 2}})], "two", output_dir=tmp_path)
    assert first[0].weights != second[0].weights and first[0].weights_sha256 != second[0].weights_sha256
