"""MLflow: one parent run per suite, one nested run per trial, written by the driver process only.

Trials return their record to the driver (through Ray Tune), which logs it; a single writer keeps SQLite
free of "database is locked" errors. ``MLFLOW_TRACKING_URI`` overrides the default sqlite file. Nothing
here calls ``mlflow.set_tracking_uri``: it writes ``MLFLOW_TRACKING_URI`` into the process environment, so
a later suite in the process (or a subprocess) would log to that store.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

from suites.record import FailedTrial, StoppedTrial, TrialRecord

EXPERIMENT = "aurora-bench"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"


# $MLFLOW_TRACKING_URI as this process found it, before any in-process mlflow.set_tracking_uri
_ENV_URI_AT_START = os.environ.get("MLFLOW_TRACKING_URI")


def user_tracking_uri() -> str | None:
    """$MLFLOW_TRACKING_URI unless ``mlflow.set_tracking_uri`` left it behind in this process.

    ``mlflow.set_tracking_uri(uri)`` (reports, tests, user code) also sets the environment variable, which
    would send a later suite in the same process to that store instead of its output folder. A value equal
    to MLflow's in-process tracking URI that was not there when this module was imported is such a
    leftover: the value the process started with stands instead (None if it had none)."""
    import sys

    env = os.environ.get("MLFLOW_TRACKING_URI")
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")  # loaded once mlflow is imported
    if env and env != _ENV_URI_AT_START and env == getattr(utils, "_tracking_uri", None):
        return _ENV_URI_AT_START
    return env


def tracking_uri(output_dir: str | Path, uri: str | None = None) -> str:
    """An explicit URI, else $MLFLOW_TRACKING_URI set by the user (``user_tracking_uri``), else sqlite under
    the output folder (absolute: Ray runs trials in other working directories). Nothing is created here: the
    folder and the file are made by ``create_store``, complete or not at all, when something logs."""
    uri = uri or user_tracking_uri()
    if uri:
        return uri
    return f"sqlite:///{Path(output_dir).expanduser().resolve() / 'mlflow.db'}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be used: a server that does not answer, a local store that cannot be
    created (read-only folder, full disk) or is not there to read."""


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for any other store (and for in-memory sqlite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def require_store(uri: str) -> None:
    """Raise unless a local store is there to read: a command that only reads runs must not open a new file
    (MLflow's client would create and migrate an empty database)."""
    if (db := sqlite_file(uri)) is not None and not db.is_file():
        raise TrackingUnavailable(f"no MLflow store at {db}; pass the --output folder (or --tracking-uri) "
                                  "of the suite that logged the runs")


def create_store(uri: str, artifact_dir: str | Path | None = None) -> None:
    """Create a local sqlite store, fully migrated, before any MLflow client opens it.

    MLflow migrates a new database file in place when a client first opens it: two suites starting together
    on one new output folder race through the migrations (one fails: ``table alembic_version already
    exists``), and a migration cut short (a full disk, a kill) leaves a file every later run fails on. Here
    the store is built in a temporary file beside it, under a lock a second process waits on, and renamed
    into place once complete: ``mlflow.db`` is either absent or whole. Other stores are left to MLflow."""
    db = sqlite_file(uri)
    if db is None or db.exists():
        return
    import fcntl

    from sqlalchemy.exc import SQLAlchemyError

    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(db.with_name(f".{db.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            if not db.exists():  # else another process built it while this one waited
                _build_store(db, artifact_dir)
    except (OSError, SQLAlchemyError) as err:
        reason = str(getattr(err, "orig", None) or err).splitlines()[0]
        raise TrackingUnavailable(f"cannot create the MLflow store {db} ({reason}); make room on that disk or "
                                  "make the folder writable, or pass another --output or --tracking-uri") from None


def _build_store(db: Path, artifact_dir: str | Path | None) -> None:
    """Migrate a new store in a temporary file and rename it to ``db`` (atomic on one file system); the
    temporary file is removed whatever happens. The caller holds the lock."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for stale in db.parent.glob(f".{db.name}.*.partial*"):  # left by a process killed while building
        stale.unlink(missing_ok=True)
    partial = db.with_name(f".{db.name}.{os.getpid()}.partial")
    uri = f"sqlite:///{partial}"
    root = Path(artifact_dir).expanduser().resolve().as_uri() if artifact_dir else DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    migrations = logging.getLogger("mlflow.store.db.utils")
    migrations.addFilter(_warnings_only)  # its "Creating initial MLflow database tables..." is no news here
    try:
        SqlAlchemyStore(uri, root)  # creates the tables, runs every migration, adds the Default experiment
        _close_engine(SqlAlchemyStore, uri)
        os.replace(partial, db)
    finally:
        migrations.removeFilter(_warnings_only)
        _close_engine(SqlAlchemyStore, uri)
        for leftover in db.parent.glob(f"{partial.name}*"):  # the file, or its -journal after a failure
            leftover.unlink(missing_ok=True)


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def _close_engine(store_cls, uri: str) -> None:
    """Close and forget the engine MLflow caches per database URI: the temporary file is renamed or deleted."""
    engine = getattr(store_cls, "_engine_map", {}).pop(uri, None)
    if engine is not None:
        engine.dispose()


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before anything is trained or written, when a tracking server does not answer (MLflow's
    own client would retry for minutes). Local stores (sqlite, file) need no check."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingUnavailable(
            f"cannot reach the MLflow tracking server at {uri} ({reason}); start it (`mlflow server "
            "--backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000`) or pass another --tracking-uri"
        ) from None


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on, as MLflow tags (``version.<package>``)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("aurora-bench", "torch", "transformers", "peft", "ray", "mlflow"):
        try:
            out[f"version.{pkg}"] = version(pkg)
        except PackageNotFoundError:
            out[f"version.{pkg}"] = "not installed"
    return out


def spec_hash(spec: dict) -> str:
    """Fingerprint of what a trial computes (not where it writes or how many threads it uses): resuming a
    suite skips a finished trial only when its fingerprint is unchanged."""
    import hashlib

    what = {k: v for k, v in spec.items() if k not in ("output_dir", "threads")}
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_name(spec: dict, row: str) -> str:
    """What MLflow's run list shows for a run: the method first (with the options its entry sets), then the seed
    and the benchmark, e.g. ``lora r=4 alpha=8 · seed0 · proxy-coco``. A variant's or a search configuration's
    row already says what sets it apart (``aurora-no-ice``, ``lora[lr=0.001,r=8]``), so it stands alone."""
    method = row
    if row == spec["method"] and spec.get("method_options"):
        method += " " + " ".join(f"{k}={_short(v)}" for k, v in spec["method_options"].items())
    return f"{method} · seed{spec['seed']} · {spec['benchmark']}"


def _short(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _trial_tags(parent_id: str, spec: dict, row: str, status: str, trial: str) -> dict:
    """The tags every trial run carries, finished, failed or stopped; ``trial`` is the trial's name
    (``benchmark--row--seedN``), which ``--resume`` matches (the run's name is for people: ``run_name``)."""
    return {"mlflow.parentRunId": parent_id, "kind": "trial", "trial": trial, "status": status, "method": row,
            "registry_method": spec["method"], "suite": spec.get("suite", ""), "benchmark": spec["benchmark"],
            "seed": str(spec["seed"]), "spec_hash": spec_hash(spec), "git_commit": git_commit()}


def _curves(history: list[dict], ms: int) -> list:
    """Per-epoch curves (losses, validation metrics) as MLflow metrics stepped by optimizer step."""
    from mlflow.entities import Metric

    return [Metric(f"epoch_{k}", float(v), ms, int(row["step"])) for row in history for k, v in row.items()
            if k != "step"]


def _flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value if not isinstance(value, (list, tuple)) else json.dumps(value)
    return out


class Tracker:
    def __init__(self, uri: str, experiment: str = EXPERIMENT, artifact_dir: str | Path | None = None,
                 create: bool = True):
        """``artifact_dir``: where a new experiment keeps artifacts when the store is a local file (MLflow's
        default is ./mlruns in the working directory); a tracking server decides for itself. ``create=False``:
        a local store must exist already (a command that only reads runs creates nothing)."""
        import mlflow
        from mlflow.tracking import MlflowClient

        check_reachable(uri)
        # MLflow draws a progress bar per artifact download (records on resume, weights for eval): not in a CLI
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        if create:
            create_store(uri, artifact_dir)
        else:
            require_store(uri)
        self.mlflow = mlflow
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        self.experiment_id = self._experiment(experiment, artifact_dir)

    def _experiment(self, name: str, artifact_dir: str | Path | None) -> str:
        """The id of experiment ``name``, created if missing; a process that loses the race to create it
        (two suites starting together) takes the winner's."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if artifact_dir is not None and self.uri.startswith(("sqlite:", "file:")):
            location = Path(artifact_dir).expanduser().resolve().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def start_suite(self, name: str, tags: dict) -> str:
        self._mark_experiment_kind()
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={"kind": "suite", "git_commit": git_commit(), **package_versions(), **tags})
        return run.info.run_id

    def _mark_experiment_kind(self) -> None:
        """Tag the experiment as model training (``mlflow.experimentKind``) unless someone chose its kind, so
        MLflow UIs that go by the tag open it on its runs rather than on GenAI traces; MLflow 3.17's UI goes by
        its ``workflowType`` instead, which the link the suite prints sets."""
        experiment = self.client.get_experiment(self.experiment_id)
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, "custom_model_development")

    def latest_suite(self, name: str) -> str | None:
        """The run id of the newest suite run called ``name``, or None."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.kind = 'suite' and attributes.run_name = '{name}'",
            order_by=["attributes.start_time DESC"], max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def reopen_suite(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def trial_runs(self, parent_id: str) -> list:
        """Every trial run nested under a suite run (finished, failed or left running by a killed driver)."""
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=50_000,
        )

    def record_of(self, run_id: str) -> TrialRecord:
        """The trial record a finished run was logged from (its ``record.json`` artifact)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = self.client.download_artifacts(run_id, "record.json", tmp)
            record = TrialRecord.from_json(Path(path).read_text())
        record.run_id = run_id
        return record

    def download(self, run_id: str, artifact: str, dst: str | Path) -> Path | None:
        """Download one artifact of a run into ``dst``; None if the run has no such artifact."""
        if artifact not in {a.path for a in self.client.list_artifacts(run_id)}:
            return None
        return Path(self.client.download_artifacts(run_id, artifact, str(dst)))

    def log_texts(self, run_id: str, files: dict[str, str]) -> None:
        """Store text files ({name: content}) as artifacts of a run (the suite's ranking)."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in files.items():
                (Path(tmp) / name).write_text(text)
            self.client.log_artifacts(run_id, tmp)

    def log_metric(self, run_id: str, key: str, value: float) -> None:
        self.client.log_metric(run_id, key, float(value))

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)  # soft delete: still in the store, hidden from searches and reports

    def end_suite(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def log_trial(self, parent_id: str, record: TrialRecord) -> str:
        """Log a finished trial record as one run nested under the suite run."""
        end_ms = int(time.time() * 1000)
        start_ms = end_ms - int(record.wall_time_s * 1000)
        tags = {
            **_trial_tags(parent_id, record.spec, record.row, "FINISHED", record.name),
            "tier": record.tier, "task": record.task, "primary_metric": record.primary_metric,
            "backbone": record.backbone, "hardware": record.hardware, "device": record.device,
            "weights_sha256": record.weights_sha256,
            "precision": record.precision, **package_versions(),
        }
        return self._log_record(self.experiment_id, tags, record, start_ms, end_ms,
                                run_name(record.spec, record.row))

    def _log_record(self, experiment_id: str, tags: dict, record: TrialRecord, start_ms: int, end_ms: int,
                    name: str) -> str:
        """One finished run of ``record``: its settings as params, metrics and curves, ``record.json`` and the
        weights it saved (if any)."""
        from mlflow.entities import Metric, Param

        run = self.client.create_run(experiment_id, start_time=start_ms, run_name=name, tags=tags)
        rid = run.info.run_id
        params = _flatten("method", record.method_config, {})
        params.update(_flatten("train", record.train_config, {}))
        params.update(_flatten("task", record.task_config, {}))
        metrics = {**record.metrics, **{f"params_{k}": v for k, v in record.params.items()},
                   "wall_time_s": record.wall_time_s, "peak_rss_mb": record.peak_rss_mb, **record.train_stats}
        batch = [Metric(k, float(v), end_ms, 0) for k, v in metrics.items()] + _curves(record.history, end_ms)
        for i in range(0, len(batch), 900):  # MLflow caps a batch at 1000 metrics
            self.client.log_batch(rid, metrics=batch[i : i + 900],
                                  params=[Param(k, str(v)[:500]) for k, v in params.items()] if i == 0 else [])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "record.json"
            path.write_text(record.to_json())
            self.client.log_artifact(rid, str(path))
        if record.weights:
            self.client.log_artifact(rid, record.weights)
        self.client.set_terminated(rid, "FINISHED", end_time=end_ms)
        return rid

    def log_transfer(self, source_run_id: str, record: TrialRecord) -> str:
        """Log ``record``, a finished trial's weights evaluated on another benchmark without training, as a run
        linked to its source: in the source's experiment, nested under the source's suite run (if any), tagged
        ``kind: transfer`` with ``source_run_id`` and ``source_benchmark`` (the benchmark the weights were tuned
        on), so neither a suite's resume nor the trial tables take it for a trial."""
        source = self.client.get_run(source_run_id)
        end_ms = int(time.time() * 1000)
        spec = record.spec
        parent = source.data.tags.get("mlflow.parentRunId")
        tags = {
            "kind": "transfer", "status": "FINISHED", "source_run_id": source_run_id,
            "source_benchmark": source.data.tags.get("benchmark", ""), "method": record.row,
            "registry_method": spec["method"], "suite": spec.get("suite", ""), "benchmark": spec["benchmark"],
            "seed": str(spec["seed"]), "tier": record.tier, "task": record.task,
            "primary_metric": record.primary_metric, "backbone": record.backbone, "hardware": record.hardware,
            "device": record.device, "precision": record.precision, "weights_sha256": record.weights_sha256,
            "git_commit": git_commit(), **package_versions(), **({"mlflow.parentRunId": parent} if parent else {}),
        }
        name = f"{run_name(spec, record.row)} (from {tags['source_benchmark']})"
        return self._log_record(source.info.experiment_id, tags, record,
                                end_ms - int(record.wall_time_s * 1000), end_ms, name)

    def source_of(self, run_id: str) -> str | None:
        """The run whose trained weights a transfer run evaluated; None for any other run."""
        return self.client.get_run(run_id).data.tags.get("source_run_id")

    def log_failure(self, parent_id: str, failure: FailedTrial) -> str:
        """Log a failed trial as a FAILED run with its error."""
        tags = {**_trial_tags(parent_id, failure.spec, failure.row, "FAILED", failure.name),
                "error": failure.error[-4000:]}
        run = self.client.create_run(self.experiment_id, run_name=run_name(failure.spec, failure.row), tags=tags)
        self.client.set_terminated(run.info.run_id, "FAILED")
        return run.info.run_id

    def log_stopped(self, parent_id: str, stopped: StoppedTrial) -> str:
        """Log a trial an early-stopping scheduler stopped as a KILLED run tagged ``stopped_early`` (the
        scheduler), with its validation curve and last validation score; it has no test metrics and is
        not ranked."""
        from mlflow.entities import Metric

        end_ms = int(time.time() * 1000)
        tags = {**_trial_tags(parent_id, stopped.spec, stopped.row, "STOPPED", stopped.name),
                "stopped_early": stopped.stopped_early, "stopped_at_step": str(stopped.step)}
        run = self.client.create_run(self.experiment_id, start_time=end_ms - int(stopped.wall_time_s * 1000),
                                     run_name=run_name(stopped.spec, stopped.row), tags=tags)
        rid = run.info.run_id
        last = {"val_score": stopped.val_score, "stopped_at_step": stopped.step, "wall_time_s": stopped.wall_time_s}
        self.client.log_batch(rid, metrics=[Metric(k, float(v), end_ms, 0) for k, v in last.items()]
                              + _curves(stopped.history, end_ms))
        self.client.set_terminated(rid, "KILLED", end_time=end_ms)
        return rid


class RunUnavailable(LookupError):
    """A run id that names no finished run with saved results in the store; the message says what it is."""


def check_finished_run(tracker: Tracker, run_id: str) -> None:
    """``run_id`` is a finished trial (or transfer) run of the store, else ``RunUnavailable`` saying what it
    is instead: unknown (listing the newest finished trial runs), a suite run, or a run that failed, was
    stopped early or never finished, none of which saved weights to evaluate."""
    from mlflow.exceptions import MlflowException

    try:
        run = tracker.client.get_run(run_id)
    except MlflowException:
        raise RunUnavailable(f"no run {run_id!r} in {tracker.uri}; {_newest_trial_runs(tracker)}") from None
    name, status, tags = run.info.run_name, run.info.status, run.data.tags
    what = f"run {run_id} ({name})"
    if run.info.lifecycle_stage == "deleted":
        raise RunUnavailable(f"{what} was deleted (a resumed suite reran it); {_newest_trial_runs(tracker)}")
    if tags.get("kind") == "suite":
        raise RunUnavailable(f"{what} is a suite run, not a trial; {_newest_trial_runs(tracker)}")
    if status == "FAILED":
        error = (tags.get("error", "").strip().splitlines() or ["no error logged"])[-1]
        raise RunUnavailable(f"{what} FAILED ({error}) and saved no weights to evaluate; rerun the trial "
                             "(the suite's command with --resume reruns failed trials)")
    if status == "KILLED" and tags.get("stopped_early"):
        raise RunUnavailable(f"{what} was stopped early by {tags['stopped_early']} at step "
                             f"{tags.get('stopped_at_step', '?')} and saved no weights to evaluate")
    if status != "FINISHED":
        raise RunUnavailable(f"{what} is {status}, not finished (still running, or its suite was killed): "
                             "nothing to evaluate until it finishes; --resume reruns it")


def _newest_trial_runs(tracker: Tracker, n: int = 5) -> str:
    """The newest finished trial runs of the tracker's experiment, for an error message."""
    runs = tracker.client.search_runs([tracker.experiment_id], "tags.kind = 'trial' and attributes.status = 'FINISHED'",
                                      order_by=["attributes.start_time DESC"], max_results=n)
    if not runs:
        return f"the store holds no finished trial run of experiment {EXPERIMENT!r}"
    listed = ", ".join(f"{r.info.run_id} ({r.info.run_name})" for r in runs)
    return f"newest finished trial runs: {listed}"
