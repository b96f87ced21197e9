"""`aurora-bench suite quick`: a first ranking in minutes is the retrieval suite cut short (one benchmark, one seed,
fewer steps), never other methods, options, learning rates, batch or task settings."""

from __future__ import annotations

from suites.orchestration.experiments import for_targets


def trial_settings(spec) -> str:
    """Everything of a trial but the seed and the schedule's length (steps, warm-up, evaluation points)."""
    train = {k: v for k, v in spec.train.items() if k not in ("steps", "warmup", "eval_every")}
    return repr((spec.benchmark, spec.row, spec.method, sorted(spec.method_options.items()), sorted(train.items()),
                 sorted(spec.benchmark_options.items()), spec.backbone))


def test_quick_is_the_retrieval_suite_cut_short():
    quick, full = for_targets(["quick"]), for_targets(["retrieval"])
    assert set(quick.benchmarks) <= set(full.benchmarks) and list(quick.methods) == list(full.methods)
    full_trials = {(s.seed, trial_settings(s)) for s in full.trials()}
    for spec in quick.trials():
        assert (spec.seed, trial_settings(spec)) in full_trials, spec.name
        assert spec.train["steps"] < full.train["steps"]
    assert len(quick.trials()) == len(quick.methods)  # one seed: a trial per method
