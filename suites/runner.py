"""Run a suite: every (method, benchmark, seed) is a Ray Tune trial, every trial an MLflow run.

Ray runs locally by default (``address=None``) or joins a cluster (``address="auto"`` or
``"ray://host:port"``). A trial that raises is retried ``retries`` times, then logged as failed; the others
finish. ``resume=True`` continues the newest suite run of the same name: trials it finished with the same
spec are kept (not rerun, not logged again), the rest run, so MLflow shows each trial once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from suites.trial import TrialSpec, run_trial


def _trainable(config: dict) -> None:
    from ray import tune

    record = run_trial(TrialSpec(**config["spec"]))
    primary = record["metrics"].get(record["primary_metric"], float("nan"))
    tune.report({"primary": primary, "record": json.dumps(record, default=str)})


def _callback(tracker, parent_id: str, records: list, failures: list, total: int):
    from ray.tune import Callback

    class LogToMlflow(Callback):
        """Driver-side: log each trial the moment it reports or fails (one writer for the store)."""

        def __init__(self):
            super().__init__()
            self.started: dict[str, float] = {}  # trial id -> when Ray started it (driver clock)

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started[trial.trial_id] = time.perf_counter()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "record" in result:
                record = json.loads(result["record"])
                record["run_id"] = tracker.log_trial(parent_id, record)
                # what Ray and MLflow add to the trial's own work: worker start-up, transfer and logging
                overhead = time.perf_counter() - self.started.pop(trial.trial_id, time.perf_counter()) \
                    - record["wall_time_s"]
                record["orchestration_overhead_s"] = overhead
                tracker.log_metric(record["run_id"], "orchestration_overhead_s", overhead)
                records.append(record)
                done = len(records) + len(failures)
                primary = record["metrics"].get(record["primary_metric"], float("nan"))
                print(f"[{done}/{total}] {record['name']}: {record['primary_metric']} {primary:.1f} "
                      f"({record['wall_time_s']:.0f} s)", flush=True)

        def on_trial_recover(self, iteration, trials, trial, **info):
            reason = (_read_error(trial).strip().splitlines() or ["unknown error"])[-1]
            print(f"retrying {TrialSpec(**trial.config['spec']).name} after: {reason}", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            error = _read_error(trial)
            spec = TrialSpec(**trial.config["spec"])
            failure = {"spec": trial.config["spec"], "name": spec.name, "row": spec.row, "error": error,
                       "reason": error.strip().splitlines()[-1] if error.strip() else "unknown error"}
            tracker.log_failure(parent_id, failure)
            failures.append(failure)
            print(f"[{len(records) + len(failures)}/{total}] FAILED {spec.name}: {failure['reason']}", flush=True)

    return LogToMlflow()


def _print_overhead(records: list[dict]) -> None:
    timed = [r for r in records if "orchestration_overhead_s" in r]
    if timed:
        overhead = sum(r["orchestration_overhead_s"] for r in timed)
        work = sum(r["wall_time_s"] for r in timed)
        print(f"Ray + MLflow overhead: {overhead / len(timed):.1f} s per trial, {100 * overhead / work:.1f} % of "
              f"the trials' own time ({len(timed)} trials)", flush=True)


def _resume(tracker, parent: str, specs: list[TrialSpec]) -> tuple[list[dict], list[TrialSpec]]:
    """-> (records of the trials the suite run already finished, specs still to run).

    Runs of requested trials that a killed driver left RUNNING, or that failed, are deleted (softly) before
    the trial reruns; runs of trials this command does not request are left alone. A finished
    trial whose spec changed since is an error: resuming means rerunning the same command.
    """
    from suites.tracking import spec_hash

    wanted = {s.name: spec_hash(dataclasses.asdict(s)) for s in specs}
    done: dict[str, str] = {}
    for run in tracker.trial_runs(parent):
        trial = run.info.run_name
        if trial not in wanted:  # a trial of this suite that this command does not ask for: left as it is
            continue
        if run.info.status != "FINISHED":
            tracker.delete_run(run.info.run_id)
        elif run.data.tags.get("spec_hash") != wanted[trial]:
            raise ValueError(f"cannot resume: trial {trial} finished with a different spec (changed options, steps "
                             "or seeds?); rerun the original command with --resume, or start a new suite without it")
        else:
            done[trial] = run.info.run_id
    records = [tracker.record_of(run_id) for run_id in done.values()]
    return records, [s for s in specs if s.name not in done]


def _read_error(trial) -> str:
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        return Path(path).read_text()
    return str(getattr(trial, "error_msg", "") or "unknown error")


def run_suite(
    specs: list[TrialSpec],
    name: str,
    output_dir: str | Path = "outputs",
    tracking_uri: str | None = None,
    address: str | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    max_concurrent: int = 0,
    retries: int = 0,
    resume: bool = False,
) -> tuple[list[dict], list[dict]]:
    """Run all trials; returns (records of finished trials, failures)."""
    import ray
    from ray import tune

    from suites.tracking import Tracker
    from suites.tracking import tracking_uri as resolve_uri

    output_dir = Path(output_dir).expanduser().resolve()
    tracker = Tracker(resolve_uri(output_dir, tracking_uri), artifact_dir=output_dir / "mlartifacts")
    parent = tracker.latest_suite(name) if resume else None
    records: list[dict] = []
    failures: list[dict] = []
    if parent is None:
        parent = tracker.start_suite(name, {"trials": str(len(specs))})
    else:
        records, specs = _resume(tracker, parent, specs)
        tracker.reopen_suite(parent)
        print(f"resuming suite {name}: {len(records)} trials already finished, {len(specs)} to run", flush=True)
    if not specs:
        tracker.end_suite(parent)
        return records, failures
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # our record is a string, not a scalar
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     object_store_memory=200 * 1024**2)
    trainable = tune.with_resources(_trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    space = [dataclasses.asdict(dataclasses.replace(s, output_dir=str(output_dir), threads=max(1, int(cpus_per_trial))))
             for s in specs]
    tuner = tune.Tuner(
        trainable,
        param_space={"spec": tune.grid_search(space)},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent or None, reuse_actors=False),
        run_config=tune.RunConfig(
            name=name, storage_path=str(output_dir / "ray"), verbose=0,
            callbacks=[_callback(tracker, parent, records, failures, len(specs))],
            failure_config=tune.FailureConfig(max_failures=retries, fail_fast=False),
        ),
    )
    status = "FINISHED"
    # Tune's own result files are off (the record is ours); silence its warning that it cannot read them.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        tuner.fit()
        _print_overhead(records)
    except BaseException:
        status = "KILLED"
        raise
    finally:
        if records:
            tracker.log_ranking(parent, records)
        tracker.end_suite(parent, status if not failures else "FAILED")
    return records, failures
