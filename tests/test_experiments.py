import pytest

from aurora.registry import UnknownNameError
from suites import experiments


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
