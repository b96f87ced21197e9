import pytest

from aurora.registry import UnknownNameError
from suites.orchestration import experiments
from suites.orchestration.experiments import SpecError


def test_retrieval_group_expands_to_trials():
    exp = experiments.load("retrieval")
    specs = exp.trials()
    assert {s.benchmark for s in specs} == {"proxy-coco", "proxy-flickr"}
    frozen = [s for s in specs if s.method == "frozen"]
    trained = [s for s in specs if s.method == "aurora"]
    assert len(frozen) == 2  # seed-independent: once per benchmark
    assert len(trained) == 2 * len(exp.seeds)
    assert trained[0].train["lr"] == exp.methods["aurora"].train["lr"]


def test_benchmark_names_pick_their_group():
    exp = experiments.for_targets(["proxy-flickr"])
    assert exp.benchmarks == ["proxy-flickr"] and "aurora" in exp.methods


@pytest.mark.parametrize("yaml_text, error, needle", [
    ("benchmarks: [proxy-coco]\nmethods: {lorra: {}}\n", UnknownNameError, "valid methods"),
    ("benchmarks: [proxy-cocoa]\nmethods: {lora: {}}\n", UnknownNameError, "valid benchmarks"),
    ("benchmarks: [proxy-coco]\nmethods: {lora: {lr: 1}}\n", experiments.SpecError, "valid keys"),
    ("benchmarks: [proxy-coco]\nmethods: {lora: {}}\nseedz: [1]\n", experiments.SpecError, "unknown key"),
    ("benchmarks: [proxy-coco\n", experiments.SpecError, "invalid YAML"),
])
def test_bad_specs_name_the_problem(tmp_path, yaml_text, error, needle):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml_text)
    with pytest.raises(error, match=needle):
        experiments.load(str(path))


def test_ablation_variants_share_one_method():
    exp = experiments.load("ablation")
    specs = exp.trials()
    rows = {s.row for s in specs}
    assert {"aurora", "aurora-no-ice", "aurora-no-gqt", "aurora-cp", "aurora-r4", "aurora-r16"} <= rows
    assert {s.method for s in specs} == {"aurora"}
    no_ice = next(s for s in specs if s.row == "aurora-no-ice")
    assert no_ice.method_options["ice"] is False and no_ice.suite == "ablation"


SEARCH = """
benchmarks: [proxy-coco]
seeds: [0, 1]
resources: {cpus_per_trial: 1, max_concurrent: 2}
methods:
  frozen: {}
  lora: {search: {lr: [1.0e-4, 1.0e-3], options.r: [4, 8]}}
  aurora:
    options: {rank: 8}
    samples: 3
    search: {lr: {loguniform: [1.0e-4, 1.0e-2]}, options.dropout: {choice: [0.0, 0.1]}}
"""


def _parse(text: str) -> experiments.Experiment:
    import yaml

    return experiments.parse(yaml.safe_load(text), "spec.yaml")


def test_grid_and_random_search_expand_to_one_row_per_configuration():
    specs = _parse(SEARCH).trials()
    lora = [s for s in specs if s.method == "lora"]
    assert len(lora) == 2 * 2 * 2  # lr x r x seeds
    assert {(s.train["lr"], s.method_options["r"]) for s in lora} == {(a, b) for a in (1e-4, 1e-3) for b in (4, 8)}
    assert "proxy-coco--lora[lr=0.0001,r=8]--seed1" in {s.name for s in lora}
    aurora = [s for s in specs if s.method == "aurora"]
    assert len(aurora) == 3 * 2 and len({s.row for s in aurora}) == 3
    assert all(1e-4 <= s.train["lr"] <= 1e-2 and s.method_options["rank"] == 8 for s in aurora)
    assert all(s.method_options["dropout"] in (0.0, 0.1) for s in aurora)
    # drawn in the driver from a fixed seed: the same command (or --resume) sees the same configurations
    assert [s.name for s in _parse(SEARCH).trials()] == [s.name for s in specs]


@pytest.mark.parametrize("search, needle", [
    ("{lr: {loguniform: [1.0e-4, 1.0e-2]}}", "set samples"),
    ("{lr: {loguniform: [1e-4, 1e-2]}}", "write 1.0e-4"),
    ("{lr: {normal: [0, 1]}}", "must be a list"),
    ("{options.rankk: [4, 8]}", "cannot search 'options.rankk'"),
    ("{steps: []}", "empty list"),
])
def test_bad_search_spaces_name_the_problem(search, needle):
    with pytest.raises(experiments.SpecError, match=needle):
        _parse(f"benchmarks: [proxy-coco]\nmethods: {{aurora: {{search: {search}}}}}\n")


def test_unknown_resource_key_lists_the_valid_ones():
    with pytest.raises(experiments.SpecError, match="valid keys"):
        _parse("benchmarks: [proxy-coco]\nmethods: {lora: {}}\nresources: {cpu: 2}\n")


def test_scheduler_section_is_optional_and_validated():
    assert _parse("benchmarks: [proxy-coco]\nmethods: {lora: {}}\n").scheduler is None
    sched = _parse("benchmarks: [proxy-coco]\nmethods: {lora: {}}\n"
                   "scheduler: {name: asha, grace_period: 100, reduction_factor: 2, max_t: 300}\n").scheduler
    assert (sched.name, sched.grace_period, sched.reduction_factor, sched.max_t) == ("asha", 100, 2, 300)


@pytest.mark.parametrize("scheduler, needle", [
    ("{name: hyperband}", "valid names: asha"),
    ("{name: asha, grace: 10}", "valid keys"),
    ("{name: asha, reduction_factor: 1}", "above 1"),
    ("{name: asha, grace_period: -5}", "whole number of steps"),
    ("{name: asha, grace_period: 200, max_t: 100}", "exceeds max_t"),
    ("asha", "must be a mapping"),
])
def test_bad_scheduler_names_the_problem(scheduler, needle):
    with pytest.raises(experiments.SpecError, match=needle):
        _parse(f"benchmarks: [proxy-coco]\nmethods: {{lora: {{}}}}\nscheduler: {scheduler}\n")


@pytest.mark.parametrize("body, needle", [
    ("benchmarks: [test-tiny]\nmethods: {lora: {}, lora: {options: {r: 8}}}\n", "duplicate key 'lora'"),
    ("benchmarks: [test-tiny]\nmethods: {lora: {}}\nseeds: 0\n", "seeds must be a list"),
    ("benchmarks: [test-tiny]\nmethods: {lora: {}}\nseeds: []\n", "seeds must be a non-empty list"),
    ("benchmarks: [test-tiny]\nmethods: {lora: {}}\nseeds: [0, 0]\n", "repeat a seed"),
    ("benchmarks: test-tiny\nmethods: {lora: {}}\n", "benchmarks must be a list"),
    ("benchmarks: [test-tiny]\nmethods: [lora]\n", "methods must be a mapping"),
    ("benchmarks: [test-tiny]\nmethods: {lora: {}}\ntrain: {stpes: 10}\n", "unknown training setting 'stpes'"),
    ("benchmarks: [test-tiny]\nmethods: {lora: {}}\ntrain: {steps: 0}\n", "train.steps must be a whole number"),
    ("benchmarks: [test-tiny]\nmethods: {lora: {}}\ntrain: {k_test: 4}\n", "a task setting: put it under 'task:'"),
    ("benchmarks: [test-tiny]\nmethods: {lora: {}}\ntask: {rerank: 1}\n", "has no task setting(s) ['rerank']"),
    ("benchmarks: [test-tiny]\nmethods: {aurora: {options: {rnak: 4}}}\n", "has no option(s) ['rnak']; valid options:"),
    ("benchmarks: [test-tiny]\nmethods: {aurora: {options: {rank: four}}}\n", "rank must be int"),
    ("benchmarks: [test-tiny]\nmethods: {lora: {options: {r: 0}}}\n", "r must be a positive integer"),
    ("benchmarks: [test-tiny]\nmethods: {lora: {options: [r, 4]}}\n", "must be a mapping of option"),
])
def test_malformed_specs_fail_with_one_line(tmp_path, body, needle):
    path = tmp_path / "spec.yaml"
    path.write_text(body)
    with pytest.raises(SpecError) as err:
        experiments.load(str(path))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_target_lists_groups_and_benchmarks():
    with pytest.raises(SpecError, match="groups: ablation, all.*benchmarks: coco"):
        experiments.for_targets(["retrievl"])


def test_relative_paths_resolve_against_the_directory_the_command_runs_in(tmp_path, monkeypatch):
    (tmp_path / "models" / "blip").mkdir(parents=True)
    spec = tmp_path / "spec.yaml"
    spec.write_text("benchmarks: [coco]\nbackbone: models/blip\nmethods: {frozen: {}}\n"
                    "benchmark_options: {coco: {data_root: data, image_root: ~/img, ann_root: /abs/ann}}\n")
    monkeypatch.chdir(tmp_path)
    exp = experiments.load("spec.yaml")
    (trial,) = exp.trials()
    assert trial.backbone == str(tmp_path / "models" / "blip")
    assert trial.benchmark_options["data_root"] == str(tmp_path / "data")
    assert trial.benchmark_options["ann_root"] == "/abs/ann"
    assert not trial.benchmark_options["image_root"].startswith("~")


def test_steps_from_the_command_line_win_over_a_recipe_s_epochs_and_every_entry(capsys):
    from suites.orchestration import experiments

    exp = experiments.for_targets(["official-coco"])
    assert all(s.train.get("epochs") for s in exp.trials())  # the recipe counts epochs
    exp.overrides = {"steps": 3, "epochs": None}
    specs = experiments.revalidate(exp).trials()
    assert specs and all(s.train["steps"] == 3 and s.train["epochs"] is None for s in specs)
