"""ASHA early stopping through real Ray Tune: a trial below the rung's cutoff is stopped, logged as stopped
(KILLED, tag stopped_early=asha, its validation curve), left out of the ranking, and a resume keeps it."""

import pytest
from mlflow.tracking import MlflowClient

from suites.cli import ranking_files
from suites.orchestration.experiments import Scheduler
from suites.orchestration.runner import run_suite
from suites.orchestration.trial import TrialSpec

pytestmark = pytest.mark.slow

TINY = dict(suite="asha-test", train={"steps": 8, "batch_size": 8, "warmup": 1, "eval_every": 4})


def specs() -> list[TrialSpec]:
    """Run in this order, one at a time. The random tiny backbone learns nothing in 8 steps, so the scores
    come from the validation sets: with 2 validation images every recall@5 is 100 (score >= 66.7 whatever
    the model), with 30 it is near chance (about 17). The second trial is far below the first at the first
    rung (step 4) and is stopped there."""
    return [TrialSpec(method="lora", benchmark="test-tiny", label=f"lora-val{n}",
                      **TINY, benchmark_options={"val_images": n})
            for n in (2, 30)]


def test_asha_stops_the_worse_trial_and_resume_keeps_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    asha = Scheduler(grace_period=4, reduction_factor=2)  # rungs at step 4 (below max_t = 8 steps)
    result = run_suite(specs(), "asha-test", output_dir=tmp_path, tracking_uri=uri, max_concurrent=1, scheduler=asha,
                       summarize=ranking_files)
    records, failures = result
    assert not failures
    assert [r.row for r in records] == ["lora-val2"]
    assert [s.name for s in result.stopped] == ["test-tiny--lora-val30--seed0"]
    assert result.stopped[0].step == 4  # stopped at the rung, not trained to the end

    client = MlflowClient(uri)
    runs = {r.data.tags["trial"]: r for r in client.search_runs(
        [client.get_experiment_by_name("aurora-bench").experiment_id], filter_string="tags.kind = 'trial'")}
    stopped = runs["test-tiny--lora-val30--seed0"]
    assert stopped.info.status == "KILLED" and stopped.data.tags["stopped_early"] == "asha"
    assert stopped.data.metrics["stopped_at_step"] == 4 and "itm_r_mean" not in stopped.data.metrics
    assert "epoch_val_itc_r_mean" in stopped.data.metrics  # its validation curve up to the stop
    assert stopped.data.metrics["val_score"] < runs["test-tiny--lora-val2--seed0"].data.metrics["epoch_val_itc_r_mean"]
    assert runs["test-tiny--lora-val2--seed0"].info.status == "FINISHED"
    ranking = client.download_artifacts(
        client.search_runs([stopped.info.experiment_id], filter_string="tags.kind = 'suite'")[0].info.run_id,
        "ranking.csv", str(tmp_path))
    assert "lora-val30" not in open(ranking).read()  # a stopped trial is not ranked

    # stopped = done: a resume reruns nothing and keeps both runs as they are
    again = run_suite(specs(), "asha-test", output_dir=tmp_path, tracking_uri=uri, resume=True, scheduler=asha)
    assert len(again[0]) == 1 and [s.run_id for s in again.stopped] == [stopped.info.run_id]
    assert len(client.search_runs([stopped.info.experiment_id], filter_string="tags.kind = 'trial'")) == 2
