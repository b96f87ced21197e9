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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from suites.engine import state
from suites.orchestration.trial import TrialSpec, run_trial
from suites.record import FailedTrial, StoppedTrial, TrialRecord, validation_score


def _trainable(config: dict) -> None:
    """A trial in one process: a Ray Tune function trainable."""
    from ray import tune

    _run(TrialSpec(**config["spec"]), tune.report, tune.Checkpoint, _saved_state(tune.get_checkpoint()))


def _data_parallel(config: dict, processes: int, cpus: float, gpus: float, retries: int) -> None:
    """A trial on ``processes`` data-parallel processes (one per GPU with ``gpus``): Ray Train's TorchTrainer
    inside this Ray Tune trial, which only waits for it. The processes report to Tune through the trainer; a
    failed process restarts the group from the trial's latest checkpoint up to ``retries`` times."""
    from ray import train, tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    spec = TrialSpec(**config["spec"])
    trainer = TorchTrainer(
        _process, train_loop_config=config,
        scaling_config=train.ScalingConfig(num_workers=processes, use_gpu=gpus > 0,
                                           resources_per_worker={"CPU": cpus, **({"GPU": gpus} if gpus else {})}),
        run_config=train.RunConfig(name=f"{spec.name}-{tune.get_context().get_trial_id()}",
                                   storage_path=str(Path(spec.output_dir) / "ray" / "train"),
                                   callbacks=[TuneReportCallback()],
                                   failure_config=train.FailureConfig(max_failures=retries)),
    )
    trainer.fit()


def _process(config: dict) -> None:
    """One process of a data-parallel trial, in a Ray Train worker (its process group set up by Ray Train)."""
    import ray.train
    import torch
    from ray.train.torch import get_device

    device = get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # "auto" computes on the current GPU: this process's own
    main = ray.train.get_context().get_world_rank() == 0
    _run(TrialSpec(**config["spec"]), ray.train.report, ray.train.Checkpoint,
         _saved_state(ray.train.get_checkpoint()), main)


def _run(spec: TrialSpec, report: Callable, checkpoint_type, resume: dict | None, main: bool = True) -> None:
    """Run a trial, reporting with ``report`` (Tune's or Train's): every evaluation point, then the record."""

    def progress(row: dict, score: float, snapshot: dict | None) -> None:
        # Intermediate results (no "record") for an early-stopping scheduler, with the training state as a
        # checkpoint where the trial saves one. The last evaluation point travels with the record instead: a
        # scheduler stops any trial that reports step >= max_t.
        result = {"step": row["step"], "val_score": score, "progress": json.dumps(row)}
        if snapshot is None or not main:
            report(result)
            return
        with tempfile.TemporaryDirectory() as tmp:
            state.save(snapshot, tmp)
            report(result, checkpoint=checkpoint_type.from_directory(tmp))

    record = run_trial(spec, on_validation=progress, resume=resume)
    step = record.history[-1]["step"] if record.history else 0
    report({"step": step, "val_score": record.val_score, "primary": record.primary, "record": record.to_json()})


def _saved_state(checkpoint) -> dict | None:
    """The training state a retried trial left in its last checkpoint (Tune's or Train's), if any."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return state.load(folder)


# What the Tune trial of a data-parallel trial reserves for itself: it only starts Ray Train and waits.
DRIVER_CPUS = 0.01


class SuiteResult(tuple):
    """``records, failures = run_suite(...)``; ``.stopped`` holds the trials an early-stopping scheduler
    stopped (logged as stopped, not ranked)."""

    stopped: list[StoppedTrial]

    def __new__(cls, records: list[TrialRecord], failures: list[FailedTrial], stopped: list[StoppedTrial]):
        result = super().__new__(cls, (records, failures))
        result.stopped = stopped
        return result


def eta_seconds(durations_s: list[float], unfinished: int, at_once: int) -> float | None:
    """Seconds until the suite ends, estimated as the mean time of the trials finished so far (driver clock,
    start to result) x the trials not finished / the trials run at once. None before any trial has finished:
    no estimate rather than a made-up one. Trials running now count as not started (their progress is not
    known), so the estimate errs long while they run; ``at_once`` is capped at the trials left. None too
    once every trial has ended."""
    if not durations_s or unfinished <= 0:
        return None
    return sum(durations_s) / len(durations_s) * unfinished / max(1, min(at_once, unfinished))


def progress_line(done: int, running: int, total: int, eta_s: float | None) -> str:
    """The prefix of every progress line: ``[3/12 done, 2 running, 7 queued, ETA ~6 min]`` (no ETA: none)."""
    queued = max(0, total - done - running)
    eta = "" if eta_s is None else f", ETA ~{_duration(eta_s)}"
    return f"[{done}/{total} done, {running} running, {queued} queued{eta}]"


def _duration(seconds: float) -> str:
    """45 s, 6 min, 2 h 05 min."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _callback(tracker, parent_id: str, records: list, failures: list, stopped: list, total: int,
              scheduler: str = ""):
    from ray.tune import Callback

    from suites.orchestration.tracking import run_name

    class LogToMlflow(Callback):
        """Driver-side: log each trial the moment it reports, fails or is stopped (one writer for the store)."""

        def __init__(self):
            super().__init__()
            self.started: dict[str, float] = {}  # trial id -> when Ray started it (driver clock)
            self.progress: dict[str, list[dict]] = {}  # trial id -> its intermediate results so far
            self.logged: set[str] = set()  # trial ids whose final record is logged
            self.durations: list[float] = []  # driver-clock seconds of each trial finished or stopped here
            self.at_once = 1  # the most trials seen running together: the suite's concurrency, for the ETA

        def _done(self) -> str:
            done = len(records) + len(failures) + len(stopped)
            eta = eta_seconds(self.durations, total - done, self.at_once)
            return progress_line(done, len(self.started), total, eta)

        def _ended(self, trial) -> float:
            """The trial's time since Ray started it, now that it has ended (0 if its start was not seen)."""
            started = self.started.pop(trial.trial_id, None)
            return 0.0 if started is None else time.perf_counter() - started

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started[trial.trial_id] = time.perf_counter()
            self.progress[trial.trial_id] = []
            self.at_once = max(self.at_once, len(self.started))
            spec = trial.config["spec"]
            print(f"{self._done()} started {run_name(spec, TrialSpec(**spec).row)}", flush=True)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "record" not in result:
                self.progress.setdefault(trial.trial_id, []).append(json.loads(result["progress"]))
                return
            self.logged.add(trial.trial_id)
            record = TrialRecord.from_json(result["record"])
            record.run_id = tracker.log_trial(parent_id, record)
            # what Ray and MLflow add to the trial's own work: worker start-up, transfer and logging
            elapsed = self._ended(trial) or record.wall_time_s
            record.orchestration_overhead_s = elapsed - record.wall_time_s
            tracker.log_metric(record.run_id, "orchestration_overhead_s", record.orchestration_overhead_s)
            records.append(record)
            self.durations.append(elapsed)
            print(f"{self._done()} {run_name(record.spec, record.row)}: {record.primary_metric} "
                  f"{record.primary:.1f} ({record.wall_time_s:.0f} s)", flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            # Ray calls this for a trial that returned and for one a scheduler stopped (status TERMINATED
            # either way); only the latter has not reported its record.
            if trial.trial_id in self.logged:
                return
            spec = TrialSpec(**trial.config["spec"])
            history = self.progress.pop(trial.trial_id, [])
            last = history[-1] if history else {}
            entry = StoppedTrial(
                spec=trial.config["spec"], name=spec.name, row=spec.row, history=history,
                stopped_early=scheduler or "scheduler", step=int(last.get("step", 0)),
                val_score=validation_score(history), wall_time_s=self._ended(trial))
            entry.run_id = tracker.log_stopped(parent_id, entry)
            stopped.append(entry)
            self.durations.append(entry.wall_time_s)
            print(f"{self._done()} STOPPED {run_name(entry.spec, spec.row)} by {entry.stopped_early} at step "
                  f"{entry.step} (validation score {entry.val_score:.1f})", flush=True)

        def on_trial_recover(self, iteration, trials, trial, **info):
            self.progress[trial.trial_id] = []
            self._ended(trial)  # pending again until Ray restarts it (on_trial_start)
            reason = (_read_error(trial).strip().splitlines() or ["unknown error"])[-1]
            spec = trial.config["spec"]
            print(f"retrying {run_name(spec, TrialSpec(**spec).row)} after: {reason}", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._ended(trial)
            error = _read_error(trial)
            spec = TrialSpec(**trial.config["spec"])
            failure = FailedTrial(spec=trial.config["spec"], name=spec.name, row=spec.row, error=error,
                                  reason=error.strip().splitlines()[-1] if error.strip() else "unknown error")
            failure.run_id = tracker.log_failure(parent_id, failure)
            failures.append(failure)
            print(f"{self._done()} FAILED {run_name(failure.spec, spec.row)}: {failure.reason}", flush=True)

    return LogToMlflow()


def _print_overhead(records: list[TrialRecord]) -> None:
    timed = [r for r in records if r.orchestration_overhead_s is not None]
    if timed:
        overhead = sum(r.orchestration_overhead_s for r in timed)
        work = sum(r.wall_time_s for r in timed)
        print(f"Ray + MLflow overhead: {overhead / len(timed):.1f} s per trial, {100 * overhead / work:.1f} % of "
              f"the trials' own time ({len(timed)} trials)", flush=True)


def _resume(tracker, parent: str, specs: list[TrialSpec]) -> tuple[list[TrialRecord], list[StoppedTrial],
                                                                    list[TrialSpec]]:
    """-> (records of the trials the suite run already finished, trials it stopped early, specs still to run).

    A trial stopped early by a scheduler is done, like a finished one: its run is kept and it is not rerun
    (the scheduler's decision stands; the trials still to run are compared among themselves). Runs of
    requested trials that a killed driver left RUNNING, or that failed, are deleted (softly) before the
    trial reruns; runs of trials this command does not request are left alone. A finished or stopped trial
    whose spec changed since is an error: resuming means rerunning the same command.
    """
    from suites.orchestration.tracking import spec_hash

    wanted = {s.name: spec_hash(dataclasses.asdict(s)) for s in specs}
    done: dict[str, str] = {}
    stopped: list[StoppedTrial] = []
    for run in tracker.trial_runs(parent):
        # runs carry the trial's name in the tag ``trial`` (their own name is for people); older runs as name
        trial = run.data.tags.get("trial") or run.info.run_name
        if trial not in wanted:  # a trial of this suite that this command does not ask for: left as it is
            continue
        early = run.info.status == "KILLED" and run.data.tags.get("stopped_early")
        if run.info.status != "FINISHED" and not early:
            tracker.delete_run(run.info.run_id)
        elif run.data.tags.get("spec_hash") != wanted[trial]:
            raise ValueError(f"cannot resume: trial {trial} finished with a different spec (changed options, steps "
                             "or seeds?); rerun the original command with --resume, or start a new suite without it")
        elif early:
            stopped.append(StoppedTrial(spec={}, name=trial, row=run.data.tags.get("method", ""),
                                        run_id=run.info.run_id, stopped_early=early,
                                        step=int(run.data.metrics.get("stopped_at_step", 0)),
                                        val_score=run.data.metrics.get("val_score", float("nan"))))
        else:
            done[trial] = run.info.run_id
    records = [tracker.record_of(run_id) for run_id in done.values()]
    kept = set(done) | {s.name for s in stopped}
    return records, stopped, [s for s in specs if s.name not in kept]


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
    processes_per_trial: int = 1,
    retries: int = 0,
    resume: bool = False,
    scheduler=None,
    summarize: Callable[[list[TrialRecord]], dict[str, str]] | None = None,
) -> SuiteResult:
    """Run all trials; returns (records of finished trials, failures), and in ``.stopped`` the trials that
    ``scheduler`` (a ``suites.orchestration.experiments.Scheduler``, e.g. ASHA; default none) stopped early.
    ``summarize(records)`` -> {file name: text}: files stored on the suite's run at the end (the ranking).
    ``processes_per_trial`` > 1 trains each trial data-parallel on that many processes (Ray Train), each with
    ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs."""
    import ray
    from ray import tune

    from suites.orchestration.tracking import Tracker
    from suites.orchestration.tracking import tracking_uri as resolve_uri

    output_dir = Path(output_dir).expanduser().resolve()
    tracker = Tracker(resolve_uri(output_dir, tracking_uri), artifact_dir=output_dir / "mlartifacts")
    parent = tracker.latest_suite(name) if resume else None
    records: list[TrialRecord] = []
    failures: list[FailedTrial] = []
    stopped: list[StoppedTrial] = []
    if parent is None:
        parent = tracker.start_suite(name, {"trials": str(len(specs))})
    else:
        records, stopped, specs = _resume(tracker, parent, specs)
        tracker.reopen_suite(parent)
        print(f"resuming suite {name}: {len(records)} trials already finished, {len(stopped)} stopped early, "
              f"{len(specs)} to run", flush=True)
    if not specs:
        tracker.end_suite(parent)
        return SuiteResult(records, failures, stopped)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # our record is a string, not a scalar
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     object_store_memory=200 * 1024**2)
    if processes_per_trial > 1:  # the Tune trial only waits (a sliver of a CPU); its processes reserve the rest
        trainable = tune.with_resources(
            tune.with_parameters(_data_parallel, processes=processes_per_trial, cpus=cpus_per_trial,
                                 gpus=gpus_per_trial, retries=retries), {"cpu": DRIVER_CPUS})
        retries = 0  # Ray Train restarts the processes from the trial's checkpoint
    else:
        trainable = tune.with_resources(_trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    space = [dataclasses.asdict(dataclasses.replace(s, output_dir=str(output_dir), threads=max(1, int(cpus_per_trial))))
             for s in specs]
    tuner = tune.Tuner(
        trainable,
        param_space={"spec": tune.grid_search(space)},
        # A one-process trial runs in a worker that earlier trials used: it skips the worker's start and imports
        # (6-8 s of CPU each here) and finds the benchmark's data cached. A trial starts from its own seed, gives
        # back the memory earlier trials freed and counts its own peak, so what ran before it in the worker
        # changes nothing it records.
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent or None,
                                    reuse_actors=processes_per_trial == 1,
                                    scheduler=_tune_scheduler(scheduler, specs)),
        run_config=tune.RunConfig(
            name=name, storage_path=str(output_dir / "ray"), verbose=0,
            # the count runs over every trial of the suite: a resumed suite's kept trials are done already
            callbacks=[_callback(tracker, parent, records, failures, stopped, len(specs) + len(records) + len(stopped),
                                 scheduler.name if scheduler else "")],
            failure_config=tune.FailureConfig(max_failures=retries, fail_fast=False),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the latest training state is enough
        ),
    )
    status = "FINISHED"
    # Tune's own result files are off (the record is ours); silence its warning that it cannot read them.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        tuner.fit()
        _print_overhead(records)
        for entry in stopped:
            print(f"stopped early, not ranked: {entry.name} at step {entry.step}", flush=True)
    except BaseException:
        status = "KILLED"
        raise
    finally:
        if records and summarize is not None:
            tracker.log_texts(parent, summarize(records))
        tracker.end_suite(parent, status if not failures else "FAILED")
    return SuiteResult(records, failures, stopped)


def _tune_scheduler(scheduler, specs: list[TrialSpec]):
    """Ray Tune's scheduler for a ``suites.orchestration.experiments.Scheduler`` (None: FIFO). Time is optimizer steps
    (the trials report ``step``); the metric is the validation score, higher is better."""
    if scheduler is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    configs = [s.train_config() for s in specs]
    max_t = scheduler.max_t or max(c.steps for c in configs)
    grace = min(scheduler.grace_period or min(c.eval_every for c in configs), max_t)
    return ASHAScheduler(time_attr="step", metric="val_score", mode="max", max_t=max_t, grace_period=grace,
                         reduction_factor=scheduler.reduction_factor)
