"""Experiment specs, trials, the Ray Tune runner and MLflow tracking."""
