"""Speed benchmarks (nox -s bench): the training step and the orchestration overhead."""
