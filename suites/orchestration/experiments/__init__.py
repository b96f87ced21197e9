"""Experiment specs: YAML files validated against a dataclass schema, expanded into trials."""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from aurora.api import create_method
from aurora.registry import METHODS, UnknownNameError
from suites.benchmarks import BENCHMARKS
from suites.engine.loop import TrainConfig
from suites.orchestration.trial import TrialSpec

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
    # Hyper-parameter search: keys are training settings ("lr") or method options ("options.rank"); a list
    # is a grid axis, {uniform|loguniform|randint: [low, high]} or {choice: [...]} a distribution.
    # samples = 0: the full grid (lists only); samples = n: n random configurations. Every configuration
    # is a row of the tables, e.g. "lora[lr=0.001,r=8]".
    search: dict = field(default_factory=dict)
    samples: int = 0


@dataclass
class Scheduler:
    """Early stopping (optional). ``asha``: Ray Tune's asynchronous successive halving. Trials report their
    validation score (the first metric of the benchmark's ``validate``, higher is better) at every evaluation
    point; at each rung (``grace_period`` x ``reduction_factor``^k optimizer steps, below ``max_t``) a trial
    below the top 1/``reduction_factor`` of those that reached the rung before it is stopped, and is logged
    as stopped (MLflow status KILLED, tag ``stopped_early``), not ranked."""

    name: str = "asha"
    grace_period: int = 0  # steps before a trial can be stopped; 0: the first evaluation point (eval_every)
    reduction_factor: float = 4
    max_t: int = 0  # steps; 0: the longest trial's steps


SCHEDULERS = ("asha",)


@dataclass
class BenchmarkEntry:
    """One benchmark's own settings in a suite, over the suite-wide ones, so that one spec can hold benchmarks
    of different model classes and recipes (COCO retrieval from one checkpoint, VQAv2 from another)."""

    backbone: str = ""  # default: the suite's backbone (its backbone_options then apply, updated by these)
    backbone_options: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)  # over the suite's train; a method entry's train overrides it
    task: dict = field(default_factory=dict)  # task settings and options, over the suite's task (as benchmark_options)


@dataclass
class Experiment:
    name: str
    benchmarks: list[str]
    methods: dict[str, MethodEntry]
    seeds: list[int] = field(default_factory=lambda: [0])
    train: dict = field(default_factory=dict)  # TrainConfig settings, for every method (entries override)
    # Task settings for every benchmark (k_test, rerank_itc_weight, loss: {...}); benchmark_options override them
    task: dict = field(default_factory=dict)
    backbone: str = ""
    backbone_options: dict = field(default_factory=dict)
    benchmark_options: dict = field(default_factory=dict)
    per_benchmark: dict[str, BenchmarkEntry] = field(default_factory=dict)
    # Ray resources: cpus_per_trial, gpus_per_trial (per process; fractions allowed), max_concurrent (0: as many
    # as fit), processes_per_trial (data-parallel processes, one per GPU); command-line flags override them.
    resources: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # training settings from the command line (--steps), over all
    search_seed: int = 0  # random search draws its configurations in the driver, so --resume sees the same ones
    scheduler: Scheduler | None = None  # early stopping, e.g. {name: asha, grace_period: 100}; default: none

    def backbone_of(self, bench: str) -> tuple[str, dict]:
        """-> (backbone, its options) for ``bench``: its own where per_benchmark names one, else the suite's."""
        own = self.per_benchmark.get(bench, BenchmarkEntry())
        if own.backbone:
            return own.backbone, dict(own.backbone_options)
        return self.backbone, {**self.backbone_options, **own.backbone_options}

    def train_of(self, bench: str, entry: MethodEntry) -> dict:
        """Training settings of ``entry`` on ``bench``: the suite's, the benchmark's, the method entry's, then
        the command line's."""
        return {**self.train, **self.per_benchmark.get(bench, BenchmarkEntry()).train, **entry.train,
                **self.overrides}

    def options_of(self, bench: str) -> dict:
        """Task settings and options of ``bench``: the suite's task, benchmark_options, then per_benchmark's task."""
        own = self.per_benchmark.get(bench, BenchmarkEntry())
        return {**self.task, **self.benchmark_options.get(bench, {}), **own.task}

    def trials(self) -> list[TrialSpec]:
        specs = []
        rng = np.random.default_rng(self.search_seed)
        configs = {name: _configurations(entry, rng) for name, entry in self.methods.items()}
        for bench in self.benchmarks:
            backbone, backbone_options = self.backbone_of(bench)
            for method, entry in self.methods.items():
                # a method that trains nothing is deterministic: one evaluation stands for every seed
                registered = entry.method or method
                seeds = self.seeds if METHODS.get(registered).trains else self.seeds[:1]
                for config, seed in itertools.product(configs[method], seeds):
                    options = {**entry.options, **{k.removeprefix("options."): v for k, v in config.items()
                                                   if k.startswith("options.")}}
                    train = {**self.train_of(bench, entry), **{k: v for k, v in config.items()
                                                                if not k.startswith("options.")}}
                    row = _row_label(method, config)
                    specs.append(TrialSpec(
                        method=registered, label=row if row != registered else "", suite=self.name,
                        benchmark=bench, seed=seed, method_options=options, train=train, backbone=backbone,
                        backbone_options=dict(backbone_options), benchmark_options=self.options_of(bench),
                    ))
        return specs


DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


def _configurations(entry: MethodEntry, rng: np.random.Generator) -> list[dict]:
    """The search configurations of one method entry ([{}] without a search)."""
    space = entry.search
    if not space:
        return [{}]
    if entry.samples == 0:
        return [dict(zip(space, values)) for values in itertools.product(*space.values())]
    return [{key: _draw(dist, rng) for key, dist in space.items()} for _ in range(entry.samples)]


def _draw(dist, rng: np.random.Generator):
    if isinstance(dist, list):
        return dist[rng.integers(len(dist))]
    (kind, args), = dist.items()
    if kind == "choice":
        return args[rng.integers(len(args))]
    low, high = args
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return int(rng.integers(low, high + 1))  # randint: both ends included


def _row_label(method: str, config: dict) -> str:
    if not config:
        return method
    values = ",".join(f"{k.removeprefix('options.')}={v:.3g}" if isinstance(v, float) else
                      f"{k.removeprefix('options.')}={v}" for k, v in config.items())
    return f"{method}[{values}]"


def _check_search(where: str, entry: MethodEntry, method_cls) -> None:
    options = {f.name for f in dataclasses.fields(method_cls.config_cls)}
    train = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, dist in entry.search.items():
        name = key.removeprefix("options.")
        if (key.startswith("options.") and name not in options) or (not key.startswith("options.") and key not in train):
            raise SpecError(f"{where}: cannot search {key!r}; searchable: {sorted(train)} and "
                            f"{sorted('options.' + o for o in options)}")
        if isinstance(dist, list):
            if not dist:
                raise SpecError(f"{where}: search.{key} is an empty list")
            continue
        if not (isinstance(dist, dict) and len(dist) == 1 and next(iter(dist)) in DISTRIBUTIONS):
            raise SpecError(f"{where}: search.{key} must be a list (grid) or one of {list(DISTRIBUTIONS)} "
                            f"with its arguments, got {dist!r}")
        (kind, args), = dist.items()
        if kind != "choice" and isinstance(args, list) and any(isinstance(a, str) for a in args):
            raise SpecError(f"{where}: search.{key}: {kind} bounds must be numbers, got {args!r} (YAML reads 1e-4 "
                            "as a string: write 1.0e-4)")
        if kind != "choice" and not (isinstance(args, list) and len(args) == 2 and args[0] < args[1]):
            raise SpecError(f"{where}: search.{key}: {kind} takes [low, high] with low < high, got {args!r}")
        if kind == "loguniform" and args[0] <= 0:
            raise SpecError(f"{where}: search.{key}: loguniform needs low > 0, got {args[0]}")
        if entry.samples == 0:
            raise SpecError(f"{where}: search.{key} is a distribution; set samples (how many configurations "
                            "to draw), or give a list for a grid")


def _check_entry_shapes(where: str, entry) -> None:
    """A method entry is a mapping of known keys; ``method`` a name, ``options``/``train``/``search`` mappings,
    ``samples`` a whole number >= 0."""
    if not isinstance(entry, dict):
        raise SpecError(f"{where} must be a mapping such as {{options: {{...}}, train: {{...}}}} (or {{}}), "
                        f"got {entry!r}")
    _check_keys(where, entry, MethodEntry)
    if entry.get("method") is not None and not isinstance(entry["method"], str):
        raise SpecError(f"{where}.method must be a registered method's name, got {entry['method']!r}")
    for key, what in (("options", "option: value"), ("train", "setting: value"), ("search", "setting: values")):
        if entry.get(key) is not None and not isinstance(entry[key], dict):
            raise SpecError(f"{where}.{key} must be a mapping of {what}, got {entry[key]!r}")
    samples = entry.get("samples")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 0):
        raise SpecError(f"{where}.samples must be a whole number >= 0, got {samples!r}")


def _check_search_values(where: str, entry: MethodEntry, method: str) -> None:
    """Every value a search can give (grid values, choices, a range's ends) is one the trial accepts."""
    for key, dist in entry.search.items():
        values = dist if isinstance(dist, list) else next(iter(dist.values()))
        if not isinstance(values, list):
            raise SpecError(f"{where}: search.{key}: {next(iter(dist))} takes a list, got {values!r}")
        for value in values:
            at = f"{where}: search.{key} value {value!r}"
            if key.startswith("options."):
                _check_options(at, method, {**entry.options, key.removeprefix("options."): value})
            else:
                _check_train_values(at, {**entry.train, key: value})


def groups() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def _check_train(where: str, train: dict) -> None:
    """Training settings are TrainConfig's fields; a task setting there gets told where it belongs."""
    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in sorted(set(train) - valid):
        hint = " (a task setting: put it under 'task:')" if key in _task_setting_names() else ""
        raise SpecError(f"{where}: unknown training setting {key!r}{hint}; valid: {sorted(valid)}")


def _check_options(where: str, method: str, options) -> None:
    """The method built in the driver, as the trial will build it (``create_method``): unknown options (listing
    the valid ones), options of the wrong type and values its config rejects fail here."""
    if not isinstance(options, dict):
        raise SpecError(f"{where} must be a mapping of option: value, got {options!r}")
    fields = {f.name: f for f in dataclasses.fields(METHODS.get(method).config_cls)}
    for key, value in options.items():
        default = fields[key].default if key in fields else None
        if default is not dataclasses.MISSING and default is not None and not _same_kind(value, default):
            raise SpecError(f"{where}.{key} must be {type(default).__name__} like its default {default!r}, "
                            f"got {value!r}")
    try:
        create_method(method, **options)
    except (UnknownNameError, TypeError, ValueError) as err:
        raise SpecError(f"{where}: {err}") from None


def _same_kind(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and (isinstance(default, float) or isinstance(value, int))
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    return isinstance(value, type(default))


def _check_train_values(where: str, train: dict) -> None:
    """The training settings one method entry runs with, built as the trial will build them."""
    try:
        TrainConfig(**train)
    except (TypeError, ValueError) as err:
        raise SpecError(f"{where}: {err}") from None


def _task_setting_names() -> set[str]:
    return {name for _, factory in BENCHMARKS.items() for name in factory().task_settings}


def _check_task(where: str, task: dict, benchmarks: list[str]) -> None:
    """Every suite-wide task setting must be one every listed benchmark has."""
    for bench in benchmarks:
        valid = BENCHMARKS.get(bench)().task_settings
        unknown = sorted(set(task) - set(valid))
        if unknown:
            raise SpecError(f"{where}: benchmark {bench!r} has no task setting(s) {unknown}; its task settings: "
                            f"{list(valid)} (set one benchmark's own under benchmark_options.{bench})")


# Fields a benchmark's registration sets itself; a spec cannot set them.
_REGISTRATION_FIELDS = {"name", "tier", "description", "default_backbone"}


def _check_benchmark_options(where: str, bench: str, options) -> None:
    """The options one benchmark of a spec runs with, built as the trial will build the benchmark: unknown
    options (and unknown keys of a structured one, such as ``loss``) list the valid ones; values its
    benchmark rejects fail here, before any data is read."""
    if not isinstance(options, dict):
        raise SpecError(f"{where} must be a mapping of option: value, got {options!r}")
    default = BENCHMARKS.get(bench)()
    if dataclasses.is_dataclass(default):  # a plugin's benchmark may be another class: its constructor decides
        valid = {f.name: getattr(default, f.name) for f in dataclasses.fields(default)
                 if f.name not in _REGISTRATION_FIELDS}
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise SpecError(f"{where}: benchmark {bench!r} has no option(s) {unknown}; its options: {sorted(valid)}")
        for key, value in options.items():
            _check_structured(f"{where}.{key}", value, _dataclass_of(type(default), key))
    try:
        BENCHMARKS.get(bench)(**options)
    except (TypeError, ValueError) as err:
        raise SpecError(f"{where}: {err}") from None


def _dataclass_of(cls: type, name: str) -> type | None:
    """The dataclass a field of ``cls`` holds (``loss``: LossSettings; ``momentum``: MomentumSettings | None)."""
    try:
        hint = typing.get_type_hints(cls).get(name)
    except (NameError, TypeError):  # annotations this module cannot resolve: the constructor decides
        return None
    return next((t for t in (typing.get_args(hint) or (hint,)) if dataclasses.is_dataclass(t)), None)


def _check_structured(where: str, value, cls: type | None) -> None:
    """A mapping given for a dataclass-valued setting: its keys, and those of its own mappings, listed when unknown."""
    if cls is None or not isinstance(value, dict):
        return
    _check_keys(where, value, cls)
    for key, inner in value.items():
        _check_structured(f"{where}.{key}", inner, _dataclass_of(cls, key))


def _check_per_benchmark(source: str, raw: dict) -> dict[str, BenchmarkEntry]:
    """per_benchmark's entries: only benchmarks of the spec, known keys, valid training settings."""
    benchmarks = raw.get("benchmarks") or []
    entries = {}
    for bench, entry in (raw.get("per_benchmark") or {}).items():
        where = f"{source}: per_benchmark.{bench}"
        if bench not in benchmarks:
            raise SpecError(f"{where}: {bench!r} is not a benchmark of this spec; its benchmarks: {benchmarks}")
        entry = entry or {}
        if not isinstance(entry, dict):
            raise SpecError(f"{where} must be a mapping such as {{backbone: ..., train: {{...}}}}, got {entry!r}")
        _check_keys(where, entry, BenchmarkEntry)
        for key in ("backbone_options", "train", "task"):
            if entry.get(key) is not None and not isinstance(entry[key], dict):
                raise SpecError(f"{where}.{key} must be a mapping (key: value lines), got {entry[key]!r}")
        if entry.get("backbone") is not None and not isinstance(entry["backbone"], str):
            raise SpecError(f"{where}.backbone must be a backbone name or checkpoint path, got {entry['backbone']!r}")
        entries[bench] = BenchmarkEntry(**{k: v for k, v in entry.items() if v is not None})
        _check_train(f"{where}.train", entries[bench].train)
    return entries


def _check_benchmarks(source: str, raw: dict, exp: Experiment) -> None:
    """benchmark_options name only the spec's benchmarks, and each benchmark's options build it."""
    for bench in raw.get("benchmark_options") or {}:
        if bench not in exp.benchmarks:
            raise SpecError(f"{source}: benchmark_options.{bench}: {bench!r} is not a benchmark of this spec; "
                            f"its benchmarks: {exp.benchmarks}")
        if bench in exp.per_benchmark and exp.per_benchmark[bench].task:
            raise SpecError(f"{source}: {bench}'s options are set twice, in benchmark_options.{bench} and in "
                            f"per_benchmark.{bench}.task; keep one")
    for bench in exp.benchmarks:
        _check_benchmark_options(f"{source}: {bench}'s options", bench, exp.options_of(bench))


def _check_keys(where: str, given: dict, cls) -> None:
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - valid)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(valid)}")


# The top-level keys whose values must be mappings, and those that must be lists.
_MAPPINGS = ("methods", "train", "task", "backbone_options", "benchmark_options", "per_benchmark", "resources")
_LISTS = ("benchmarks", "seeds")


def _check_shapes(source: str, raw: dict) -> None:
    """Mappings where mappings are meant, lists where lists are meant, seeds distinct whole numbers."""
    for key in _MAPPINGS:
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise SpecError(f"{source}: {key} must be a mapping (key: value lines), got {raw[key]!r}")
    for key in _LISTS:
        if key in raw and not isinstance(raw[key], list):
            raise SpecError(f"{source}: {key} must be a list such as [{raw[key]!r}], got {raw[key]!r}")
    if "name" in raw and not isinstance(raw["name"], str):
        raise SpecError(f"{source}: name must be a string (the suite's name), got {raw['name']!r}")
    seeds = raw.get("seeds", [0])
    if not seeds or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        raise SpecError(f"{source}: seeds must be a non-empty list of whole numbers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"{source}: seeds {seeds!r} repeat a seed (each seed is one trial and one sample)")
    if not all(isinstance(b, str) for b in raw.get("benchmarks") or []):
        raise SpecError(f"{source}: benchmarks must be a list of benchmark names, got {raw['benchmarks']!r}")


def parse(raw: dict, source: str) -> Experiment:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping at the top level")
    _check_keys(source, raw, Experiment)
    _check_shapes(source, raw)
    _check_train(f"{source}: train", raw.get("train") or {})
    for bench in raw.get("benchmarks") or []:
        BENCHMARKS.get(bench)
    per_benchmark = _check_per_benchmark(source, raw)
    methods = {}
    for name, entry in (raw.get("methods") or {}).items():
        entry = entry or {}
        _check_entry_shapes(f"{source}: methods.{name}", entry)
        method_cls = METHODS.get(entry.get("method") or name)  # unknown methods fail with the valid names
        methods[name] = MethodEntry(**{k: v for k, v in entry.items() if v is not None})  # "key:" alone: default
        _check_train(f"{source}: methods.{name}.train", methods[name].train)
        for bench in raw.get("benchmarks") or [None]:
            own = per_benchmark[bench].train if bench in per_benchmark else {}
            _check_train_values(f"{source}: methods.{name}" + (f" on {bench}" if own else ""),
                                {**(raw.get("train") or {}), **own, **methods[name].train})
        _check_search(f"{source}: methods.{name}", methods[name], method_cls)
        _check_search_values(f"{source}: methods.{name}", methods[name], entry.get("method") or name)
        _check_options(f"{source}: methods.{name}.options", entry.get("method") or name, methods[name].options)
    check_resources(f"{source}: resources", raw.get("resources") or {})
    _check_task(f"{source}: task", raw.get("task") or {}, raw.get("benchmarks") or [])
    scheduler = _scheduler(source, raw.get("scheduler"))
    if not methods or not raw.get("benchmarks"):
        raise SpecError(f"{source}: needs at least one entry under 'methods' and under 'benchmarks'")
    exp = Experiment(**{**raw, "methods": methods, "per_benchmark": per_benchmark, "scheduler": scheduler,
                        "name": raw.get("name", Path(source).stem)})
    _check_benchmarks(source, raw, exp)
    return with_absolute_paths(exp)


# Ray resources a suite may set: (type, smallest value). Fractions of a GPU share it.
RESOURCES = {"cpus_per_trial": (float, 0.01), "gpus_per_trial": (float, 0), "max_concurrent": (int, 0),
             "processes_per_trial": (int, 1)}


def check_resources(where: str, resources: dict) -> None:
    """Known keys, numbers of the right kind and range (a spec's ``resources`` and the command-line flags)."""
    unknown = sorted(set(resources) - set(RESOURCES))
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(RESOURCES)}")
    for key, value in resources.items():
        kind, least = RESOURCES[key]
        ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
        if not ok or value < least:
            raise SpecError(f"{where}: {key} must be a {'number' if kind is float else 'whole number'} >= {least}, "
                            f"got {value!r}")


def _absolute(value: str) -> str:
    return str(Path(value).expanduser().resolve())


def with_absolute_paths(exp: Experiment) -> Experiment:
    """Data folders (options ending in ``_root``) and a checkpoint path resolved against the directory the
    command runs in: trials run in Ray's own working directories, where a relative path means something else."""
    def options(opts: dict) -> dict:
        return {k: _absolute(v) if k.endswith("_root") and isinstance(v, str) and v else v for k, v in opts.items()}

    def backbone(name: str) -> str:
        return _absolute(name) if name and (name.startswith((".", "~", "/")) or Path(name).exists()) else name

    per_benchmark = {b: dataclasses.replace(e, backbone=backbone(e.backbone), task=options(e.task))
                     for b, e in exp.per_benchmark.items()}
    return dataclasses.replace(exp, backbone=backbone(exp.backbone), task=options(exp.task),
                               benchmark_options={b: options(o) for b, o in exp.benchmark_options.items()},
                               per_benchmark=per_benchmark)


def _scheduler(source: str, raw) -> Scheduler | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: scheduler must be a mapping such as {{name: asha, grace_period: 100}}, got {raw!r}")
    _check_keys(f"{source}: scheduler", raw, Scheduler)
    sched = Scheduler(**raw)
    if sched.name not in SCHEDULERS:
        raise SpecError(f"{source}: scheduler: unknown name {sched.name!r}; valid names: {', '.join(SCHEDULERS)}")
    for key in ("grace_period", "max_t"):
        value = getattr(sched, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SpecError(f"{source}: scheduler.{key} must be a whole number of steps (0: the default), got {value!r}")
    factor = sched.reduction_factor
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor <= 1:
        raise SpecError(f"{source}: scheduler.reduction_factor must be a number above 1, got {factor!r}")
    if sched.max_t and sched.grace_period > sched.max_t:
        raise SpecError(f"{source}: scheduler.grace_period ({sched.grace_period}) exceeds max_t ({sched.max_t})")
    return sched


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: a repeated variant name
    would otherwise silently drop the earlier one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load(name_or_path: str) -> Experiment:
    """A group name (a YAML file in suites/orchestration/experiments/) or a path to a YAML spec."""
    path = Path(name_or_path)
    if not path.suffix:
        path = HERE / f"{name_or_path}.yaml"
        if not path.is_file():
            raise SpecError(f"unknown suite group {name_or_path!r}; valid groups: {', '.join(groups())} "
                            "(or pass benchmark names or a YAML file)")
    if not path.is_file():
        raise SpecError(f"experiment spec {path} does not exist")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{path}: invalid YAML{where}: {problem}") from None
    return parse(raw, str(path))


def revalidate(exp: Experiment) -> Experiment:
    """Check an experiment again after command-line overrides (seeds, steps, methods), as a spec would be."""
    raw = {"seeds": exp.seeds, "benchmarks": exp.benchmarks, "train": exp.train}
    _check_shapes(exp.name, raw)
    for name, entry in exp.methods.items():
        for bench in exp.benchmarks:
            _check_train_values(f"{exp.name}: methods.{name} on {bench}", exp.train_of(bench, entry))
    return exp


def for_targets(targets: list[str], methods: list[str] | None = None) -> Experiment:
    """Suite targets from the command line: one group, a YAML file, or benchmark names, run with ``methods``
    (default: every method of the suite) and the seeds of the group.

    Benchmark names run under their task's main group (``main_group``), named after it when they are all its
    benchmarks (``proxy-coco proxy-flickr`` is ``retrieval``), else ``<group>-<benchmarks>``
    (``retrieval-proxy-coco``)."""
    if len(targets) == 1 and (targets[0] in groups() or targets[0].endswith((".yaml", ".yml"))):
        return with_methods(load(targets[0]), methods)
    for bench in targets:
        if bench not in BENCHMARKS:
            raise SpecError(f"unknown suite group or benchmark {bench!r}; groups: {', '.join(groups())}; "
                            f"benchmarks: {', '.join(BENCHMARKS.names())} (or pass a YAML file)")
    exp = load(main_group(targets))
    name = exp.name if set(targets) == set(exp.benchmarks) else f"{exp.name}-{'-'.join(targets)}"
    return with_methods(dataclasses.replace(exp, benchmarks=list(targets), name=name), methods)


def main_group(benchmarks: list[str]) -> str:
    """The group whose settings benchmark names run with: among the groups listing all of them, the one named
    after their task (``retrieval`` for proxy-coco, ``vqa`` for proxy-vqa), else the one listing the fewest
    benchmarks (the most specific: ``video`` for proxy-msrvtt, ``official-coco`` for coco), ties by name."""
    listed = {group: yaml.safe_load((HERE / f"{group}.yaml").read_text())["benchmarks"] for group in groups()}
    listing = [(len(names), group) for group, names in listed.items() if set(benchmarks) <= set(names)]
    if not listing:
        raise SpecError(f"no suite group lists all of {benchmarks}; valid groups: {', '.join(groups())} "
                        "(or pass a YAML file naming them)")
    tasks = {BENCHMARKS.get(bench)().task for bench in benchmarks}
    named = [group for _, group in listing if len(tasks) == 1 and group in tasks]
    return named[0] if named else min(listing)[1]


def with_methods(exp: Experiment, methods: list[str] | None) -> Experiment:
    """``exp`` running only ``methods`` (None: all of its own), in that order. A name the suite lists keeps its
    entry (options, training settings); any other registered method is added with its registry defaults and
    the suite's training settings; anything else is an error listing both."""
    if not methods:
        return exp
    unknown = [m for m in methods if m not in exp.methods and m not in METHODS]
    if unknown:
        raise UnknownNameError(f"method(s) {unknown} are neither entries of suite {exp.name!r} "
                               f"({', '.join(exp.methods)}) nor registered methods ({', '.join(METHODS.names())})")
    chosen = {m: exp.methods.get(m, MethodEntry()) for m in dict.fromkeys(methods)}
    return dataclasses.replace(exp, methods=chosen)
