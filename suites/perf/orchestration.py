"""Orchestration benchmark: what Ray Tune + MLflow cost per trial, and what two concurrent trials gain.

``python -m suites.perf.orchestration`` (or ``nox -s bench -- orchestration``) runs one small proxy suite
(by default 4 trials of Aurora on proxy-coco, 100 steps, seeds 0..3) through ``run_suite`` once per
concurrency level (by default ``max_concurrent`` 1, then 2), each with 1 CPU per trial (a trial runs
``cpus_per_trial`` torch threads), in a temporary output folder, and reports:

- throughput: trials per hour of driver wall time (the ``run_suite`` call, Ray already started; it includes
  each suite's fixed cost, a fresh MLflow store and Tune's start-up, a few seconds, so trials must be long
  enough to dominate: the default 100 proxy steps take about a minute each);
- speedup: throughput at the highest concurrency over throughput at 1 (target: >= 1.7 on 2 cores);
- overhead: the sum of the trials' ``orchestration_overhead_s`` (driver-side trial time minus the trial's own
  ``wall_time_s``: Ray worker start-up, transfer, MLflow logging) over the sum of their ``wall_time_s``
  (target: <= 5 %).

A measurement, not a test: it asserts nothing, prints a summary and writes JSON. Run it on a quiet machine;
other jobs on the cores distort both numbers. ``--steps 5 --backbone test-tiny --small`` checks the plumbing
in a minute without the proxy pretraining.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

SMALL_DATA = {"train_images": 24, "val_images": 6, "test_images": 12, "captions_per_image": 2}


def measure(specs, concurrency: int, cpus_per_trial: float, root: Path) -> dict:
    """Run ``specs`` as one suite at ``concurrency`` -> wall time, throughput and per-trial timings."""
    from suites.orchestration.runner import run_suite

    out = root / f"concurrency{concurrency}"
    start = time.perf_counter()
    records, failures = run_suite(specs, f"bench-orchestration-c{concurrency}", output_dir=out,
                                  tracking_uri=f"sqlite:///{out / 'mlflow.db'}", cpus_per_trial=cpus_per_trial,
                                  max_concurrent=concurrency)
    wall = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} trial(s) failed: {failures[0].reason}")
    own = sum(r.wall_time_s for r in records)
    overhead = sum(r.orchestration_overhead_s for r in records)
    return {
        "max_concurrent": concurrency, "cpus_per_trial": cpus_per_trial, "trials": len(records),
        "wall_s": wall, "trials_per_hour": 3600 * len(records) / wall,
        "overhead_pct": 100 * overhead / own,
        "trial_wall_s": [round(r.wall_time_s, 2) for r in records],
        "trial_overhead_s": [round(r.orchestration_overhead_s, 2) for r in records],
        "trial_step_time_s": [round(r.train_stats.get("step_time", float("nan")), 4) for r in records],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4, help="trials per run (seeds 0..n-1)")
    parser.add_argument("--method", default="aurora")
    parser.add_argument("--options", default='{"rank": 8}', help="method options as JSON (the suites' Aurora)")
    parser.add_argument("--benchmark", default="proxy-coco")
    parser.add_argument("--backbone", default="", help="default: the benchmark's (proxy, pretrained once)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--small", action="store_true", help="a few dozen images instead of the full proxy sets")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus-per-trial", type=float, default=1)
    parser.add_argument("--output", default="outputs/bench_orchestration.json")
    args = parser.parse_args(argv)

    import mlflow  # noqa: F401  imported before the timed runs, so neither pays for the first import
    import ray
    from ray import tune  # noqa: F401

    from suites.orchestration.preflight import prepare_backbones
    from suites.orchestration.trial import TrialSpec, hardware

    train = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "warmup": max(1, args.steps // 10),
             "eval_every": max(1, args.steps // 2)}
    specs = [TrialSpec(method=args.method, benchmark=args.benchmark, seed=seed, method_options=json.loads(args.options),
                       train=train, backbone=args.backbone, benchmark_options=SMALL_DATA if args.small else {},
                       suite="bench-orchestration") for seed in range(args.trials)]
    prepare_backbones(specs)  # the proxy pretraining (cached) happens here, not inside a timed trial
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024**2)  # started once, outside the timed runs
    runs = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-orchestration-") as tmp:
            for concurrency in args.concurrency:
                runs.append(measure(specs, concurrency, args.cpus_per_trial, Path(tmp)))
    finally:
        ray.shutdown()
    base = next((r for r in runs if r["max_concurrent"] == 1), runs[0])
    top = max(runs, key=lambda r: r["max_concurrent"])
    own = sum(sum(r["trial_wall_s"]) for r in runs)
    overhead = sum(sum(r["trial_overhead_s"]) for r in runs)
    result = {
        "hardware": hardware(), "cpu_count": os.cpu_count(),
        "config": {k: v for k, v in vars(args).items() if k != "output"},
        "runs": runs,
        "speedup": top["trials_per_hour"] / base["trials_per_hour"],
        "speedup_of": [top["max_concurrent"], base["max_concurrent"]],
        "overhead_pct": 100 * overhead / own,
        "targets": {"speedup_min": 1.7, "overhead_pct_max": 5.0},
    }
    for r in runs:
        print(f"max_concurrent {r['max_concurrent']} x {r['cpus_per_trial']:g} CPU: {r['trials']} trials in "
              f"{r['wall_s']:.0f} s = {r['trials_per_hour']:.1f} trials/h; Ray + MLflow overhead "
              f"{r['overhead_pct']:.1f} % of the trials' own time")
    print(f"throughput {top['max_concurrent']} vs {base['max_concurrent']} concurrent: {result['speedup']:.2f}x "
          f"(target >= 1.7); overhead over all trials {result['overhead_pct']:.1f} % (target <= 5 %)")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(out)
    return result


if __name__ == "__main__":
    main()
