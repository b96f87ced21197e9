"""Experiment specs: YAML files validated against a dataclass schema, expanded into trials."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from aurora.registry import BENCHMARKS, METHODS
from suites.trial import TrialSpec

HERE = Path(__file__).parent


class SpecError(ValueError):
    """An experiment spec that does not validate; the message names the file and the field."""


@dataclass
class MethodEntry:
    """One row of a suite: the entry's key names the row; ``method`` the registered method (default: the key),
    so one method can appear as several variants (ablations)."""

    method: str = ""
    options: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)


@dataclass
class Experiment:
    name: str
    benchmarks: list[str]
    methods: dict[str, MethodEntry]
    seeds: list[int] = field(default_factory=lambda: [0])
    train: dict = field(default_factory=dict)
    backbone: str = ""
    backbone_options: dict = field(default_factory=dict)
    benchmark_options: dict = field(default_factory=dict)

    def trials(self) -> list[TrialSpec]:
        specs = []
        for bench in self.benchmarks:
            for method, entry in self.methods.items():
                # a method that trains nothing is deterministic: one evaluation stands for every seed
                registered = entry.method or method
                seeds = self.seeds if METHODS.get(registered).trains else self.seeds[:1]
                for seed in seeds:
                    train = {**self.train, **entry.train}
                    specs.append(TrialSpec(
                        method=registered, label=method if method != registered else "", suite=self.name,
                        benchmark=bench, seed=seed, method_options=dict(entry.options),
                        train=train, backbone=self.backbone, backbone_options=dict(self.backbone_options),
                        benchmark_options=dict(self.benchmark_options.get(bench, {})),
                    ))
        return specs


def groups() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def _check_keys(where: str, given: dict, cls) -> None:
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - valid)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(valid)}")


def parse(raw: dict, source: str) -> Experiment:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping at the top level")
    _check_keys(source, raw, Experiment)
    methods = {}
    for name, entry in (raw.get("methods") or {}).items():
        entry = entry or {}
        _check_keys(f"{source}: methods.{name}", entry, MethodEntry)
        METHODS.get(entry.get("method") or name)  # unknown methods fail with the valid names
        methods[name] = MethodEntry(**entry)
    for bench in raw.get("benchmarks") or []:
        BENCHMARKS.get(bench)
    if not methods or not raw.get("benchmarks"):
        raise SpecError(f"{source}: needs at least one entry under 'methods' and under 'benchmarks'")
    return Experiment(**{**raw, "methods": methods, "name": raw.get("name", Path(source).stem)})


def load(name_or_path: str) -> Experiment:
    """A group name (a YAML file in suites/experiments/) or a path to a YAML spec."""
    path = Path(name_or_path)
    if not path.suffix:
        path = HERE / f"{name_or_path}.yaml"
        if not path.is_file():
            raise SpecError(f"unknown suite group {name_or_path!r}; valid groups: {', '.join(groups())} "
                            "(or pass benchmark names or a YAML file)")
    if not path.is_file():
        raise SpecError(f"experiment spec {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{path}: invalid YAML{where}: {problem}") from None
    return parse(raw, str(path))


def for_targets(targets: list[str]) -> Experiment:
    """Suite targets from the command line: one group, a YAML file, or benchmark names (run with the
    methods and seeds of the group that lists them)."""
    if len(targets) == 1 and (targets[0] in groups() or targets[0].endswith((".yaml", ".yml"))):
        return load(targets[0])
    for bench in targets:
        BENCHMARKS.get(bench)  # unknown names fail with the valid ones
    for group in groups():
        exp = load(group)
        if set(targets) <= set(exp.benchmarks):
            return dataclasses.replace(exp, benchmarks=list(targets), name=f"{exp.name}-{'-'.join(targets)}")
    raise SpecError(f"no suite group lists all of {targets}; valid groups: {', '.join(groups())}")
