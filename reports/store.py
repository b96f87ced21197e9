"""The finished trials of an MLflow experiment, read back as the ``TrialRecord``s they were logged from (each
trial run's ``record.json`` artifact), so the report is built from the same records as a suite's ranking."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from suites.record import TrialRecord

RECORD_ARTIFACT = "record.json"


def load_records(tracking_uri: str, experiment: str = "aurora-bench") -> list[TrialRecord]:
    """The records of the experiment's finished trial runs, oldest first; of a trial run more than once (the same
    suite, benchmark, method and seed), the newest run only. Read through a client of ``tracking_uri``:
    ``mlflow.set_tracking_uri`` would leave MLFLOW_TRACKING_URI set for the rest of the process."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp, _without_progress_bars():
        records = [read_record(client, run_id, Path(tmp)) for run_id in finished_trial_runs(client, experiment)]
    return newest_per_trial(records)


def finished_trial_runs(client, experiment: str) -> list[str]:
    """Run ids of the experiment's finished trial runs, oldest first (deleted runs are not searched)."""
    found = client.get_experiment_by_name(experiment)
    run_ids, token = [], None
    while found is not None:
        page = client.search_runs([found.experiment_id], "tags.kind = 'trial' and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time ASC"], page_token=token)
        run_ids += [run.info.run_id for run in page]
        token = page.token
        if not token:
            break
    return run_ids


def read_record(client, run_id: str, tmp: Path) -> TrialRecord:
    """The record a finished trial run was logged from (the tracker logs it before it marks the run finished)."""
    from mlflow.exceptions import MlflowException

    try:
        path = client.download_artifacts(run_id, RECORD_ARTIFACT, str(tmp))
    except (MlflowException, OSError) as err:  # which one depends on the artifact store
        raise FileNotFoundError(f"finished trial run {run_id} has no readable {RECORD_ARTIFACT}: {err}") from err
    record = TrialRecord.from_json(Path(path).read_text())
    record.run_id = run_id
    return record


@contextmanager
def _without_progress_bars() -> Iterator[None]:
    """MLflow draws a progress bar per download: one per trial run would flood the terminal."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key)
        else:
            os.environ[key] = before


def newest_per_trial(records: list[TrialRecord]) -> list[TrialRecord]:
    """``records`` (oldest first) without the older runs of a repeated trial; the rest keep their order."""
    def key(r: TrialRecord) -> tuple:
        return r.spec.get("suite", ""), r.benchmark, r.row, r.seed

    newest = {key(r): i for i, r in enumerate(records)}
    return [r for i, r in enumerate(records) if newest[key(r)] == i]
