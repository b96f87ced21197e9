"""The method- and task-agnostic training engine."""
