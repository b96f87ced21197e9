"""Fuzzing the spec validator: hundreds of malformed YAML specs through ``aurora-bench suite SPEC.yaml``, in
process. Every one must stop with one line (exit 2) and write nothing: no output folder, no MLflow store, no
Ray. Preflight and the runner are replaced by tripwires, so a spec the validator lets through fails the test
instead of starting a suite.

The specs are a valid spec with one fault each: a value of the wrong type at any place of it, a bad value
(negative, zero, non-finite, unknown name, empty), a missing required key, an unknown key at any level, a
duplicated key, a string where a list belongs, and text that is not YAML (or not a mapping) at all.
"""

from __future__ import annotations

import copy
import math
import random

import pytest
import yaml

from suites.cli import main

# A valid spec: every fault below is made in a copy of it.
BASE = {
    "name": "fuzz",
    "benchmarks": ["test-tiny"],
    "seeds": [0, 1],
    "train": {"steps": 2, "batch_size": 4, "warmup": 1, "eval_every": 1, "lr": 0.001},
    "task": {"k_test": 4},
    "methods": {
        "frozen": {},
        "lora": {"options": {"r": 4}, "train": {"lr": 0.002}},
        "aurora-small": {"method": "aurora", "options": {"rank": 4}},
        "searched": {"method": "lora", "search": {"lr": [0.001, 0.01]}},
    },
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
}

# What a value of each kind can wrongly be: other kinds, and bad values of its own kind.
WRONG = {
    dict: ["a string", [1, 2], 7, True],
    list: ["test-tiny", {"a": 1}, 7, []],
    int: ["three", [3], {"v": 3}, 2.5, True, -3],
    float: ["fast", [0.1], {"v": 0.1}, -1.0, float("nan"), float("inf"), True],
    str: [42, ["x"], {"a": 1}, "no-such-name"],
}


def valid_anyway(path: tuple, new) -> bool:
    """Substitutions that still make a valid spec: any string names a suite, any whole number is a seed, no
    warmup is fine, a fraction of a CPU can be reserved, and a reduction factor need only exceed 1."""
    number = isinstance(new, (int, float)) and not isinstance(new, bool) and math.isfinite(new)
    return (path == ("name",) and isinstance(new, str)) \
        or (path[0] == "seeds" and isinstance(new, int) and not isinstance(new, bool)) \
        or (path == ("train", "warmup") and new == 0) \
        or (path == ("resources", "cpus_per_trial") and number and new > 0) \
        or (path == ("scheduler", "reduction_factor") and number and new > 1)


def paths(value, prefix=()):
    """Every (path, value) inside a nested dict / list."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def replaced(path, new):
    spec = copy.deepcopy(BASE)
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return spec


def wrong_values():
    for path, value in paths(BASE):
        if not path:
            continue
        kind = bool if isinstance(value, bool) else type(value)
        for new in WRONG.get(kind, []):
            if valid_anyway(path, new):
                continue
            yield f"{'.'.join(map(str, path))}={new!r}", yaml.safe_dump(replaced(path, new), sort_keys=False)


def unknown_keys():
    for path, value in paths(BASE):
        if isinstance(value, dict) and path not in (("methods",),):
            spec = copy.deepcopy(BASE)
            node = spec
            for key in path:
                node = node[key]
            node["bogus_key"] = 1
            yield f"unknown key under {'.'.join(map(str, path)) or 'top'}", yaml.safe_dump(spec, sort_keys=False)


def missing_keys():
    for key in ("benchmarks", "methods"):
        spec = copy.deepcopy(BASE)
        del spec[key]
        yield f"no {key}", yaml.safe_dump(spec, sort_keys=False)


def bad_values():
    cases = {
        ("benchmarks",): ["proxy-nope"], ("methods",): {}, ("seeds",): [], ("train", "steps"): 0,
        ("train", "batch_size"): 0, ("train", "eval_every"): 0, ("train", "precision"): "fp8",
        ("train", "device"): "tpu", ("methods", "lora", "method"): "loraa", ("scheduler", "name"): "hyperband",
        ("scheduler", "reduction_factor"): 1, ("resources", "gpus_per_trial"): -1, ("resources", "cpus_per_trial"): 0,
        ("methods", "searched", "search"): {"lr": {"loguniform": [0.1, 0.01]}},
        ("methods", "searched", "search", "lr"): [], ("task", "k_test"): "all",
    }
    for path, new in cases.items():
        yield f"{'.'.join(path)}={new!r}", yaml.safe_dump(replaced(path, new), sort_keys=False)
    yield "seeds repeat", yaml.safe_dump({**BASE, "seeds": [1, 1]}, sort_keys=False)
    yield "task setting of no benchmark", yaml.safe_dump({**BASE, "task": {"no_such_setting": 1}}, sort_keys=False)
    for loss in ({"itm_negatives": "bogus"}, {"itm_weight": -1}, {"itm_anchors": 1.5}, {"temp_min": "low"},
                 {"momentum": {"decay": 1.5}}, {"momentum": {"queue_size": -8}}, {"momentum": {"queue": 8}},
                 {"momentum": "yes"}, {"no_such_loss_setting": 1}):
        task = {**BASE["task"], "loss": loss}
        yield f"task.loss={loss!r}", yaml.safe_dump({**BASE, "task": task}, sort_keys=False)


def duplicated_keys():
    text = yaml.safe_dump(BASE, sort_keys=False)
    yield "duplicated top-level key", text + "name: again\n"
    yield "duplicated method", text.replace("  frozen: {}\n", "  frozen: {}\n  frozen: {}\n")
    yield "duplicated train key", text.replace("  steps: 2\n", "  steps: 2\n  steps: 3\n")


GARBAGE = {
    "empty file": "", "null": "null\n", "a number": "42\n", "a string": "just words\n", "a list": "- a\n- b\n",
    "unclosed list": "benchmarks: [test-tiny\nmethods: {lora: {}}\n", "tab indent": "methods:\n\tlora: {}\n",
    "bad indent": "methods:\n  lora: {}\n benchmarks: [x]\n", "colon soup": ": : :\n", "unclosed quote": "name: 'x\n",
    "stray brace": "}\n", "alias to nothing": "name: *nothing\n", "binary": "\x00\x01\x02",
    "python tag": "name: !!python/object/apply:os.system ['true']\n", "nested garbage": "methods: {lora: [}\n",
}


def garbage():
    yield from GARBAGE.items()


def random_mutations(n: int, seed: int = 0):
    """Random single faults anywhere: a wrong-kind value at a random place, as a reproducible sample."""
    rng = random.Random(seed)
    places = [(p, v) for p, v in paths(BASE) if p and p[0] != "seeds" and p != ("name",)]
    for _ in range(n):
        path, value = rng.choice(places)
        kind = bool if isinstance(value, bool) else type(value)
        new = rng.choice([v for k, vs in WRONG.items() if k is not kind for v in vs if not isinstance(v, kind)]
                         or ["?"])
        if isinstance(value, (int, float)) and isinstance(new, (int, float)) and not isinstance(new, bool):
            continue
        yield f"random {'.'.join(map(str, path))}={new!r}", yaml.safe_dump(replaced(path, new), sort_keys=False)


CASES = dict([*wrong_values(), *unknown_keys(), *missing_keys(), *bad_values(), *duplicated_keys(), *garbage(),
              *random_mutations(60)])


class LetThrough(Exception):
    """The validator passed a malformed spec on to preflight or the runner."""


def tripwire(*args, **kwargs):
    raise LetThrough


@pytest.fixture
def no_suite_can_start(monkeypatch):
    monkeypatch.setattr("suites.orchestration.preflight.preflight", tripwire)
    monkeypatch.setattr("suites.orchestration.runner.run_suite", tripwire)


def test_the_valid_base_spec_reaches_preflight(tmp_path, no_suite_can_start):
    """The faults are what makes the specs below fail: the spec they are made in passes validation."""
    spec = tmp_path / "base.yaml"
    spec.write_text(yaml.safe_dump(BASE, sort_keys=False))
    with pytest.raises(LetThrough):
        main(["suite", str(spec), "--output", str(tmp_path / "out")])


def test_there_are_many_malformed_specs():
    assert len(CASES) > 150


def test_every_malformed_spec_is_one_line_and_writes_nothing(tmp_path, capsys, no_suite_can_start, monkeypatch):
    import ray

    def no_ray(*args, **kwargs):  # an earlier test may have started Ray in this process: watch for a new start
        raise LetThrough("ray.init")

    monkeypatch.setattr(ray, "init", no_ray)
    failures = []
    for i, (label, text) in enumerate(CASES.items()):
        spec, out = tmp_path / f"spec{i}.yaml", tmp_path / f"out{i}"
        spec.write_text(text)
        try:
            code = main(["suite", str(spec), "--output", str(out)])
        except LetThrough:
            failures.append(f"{label}: validated (reached preflight)")
            continue
        except Exception as err:  # a traceback the user would see
            failures.append(f"{label}: {type(err).__name__}: {err}")
            continue
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        if code != 2 or len(err) != 1 or not err[0].startswith("aurora-bench: error: "):
            failures.append(f"{label}: exit {code}, stderr {err[:3]}")
        if out.exists():
            failures.append(f"{label}: wrote {out}")
    assert not failures, f"{len(failures)} of {len(CASES)} malformed specs:\n" + "\n".join(failures)
