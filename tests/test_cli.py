import json

import pytest

from suites.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_params_json_on_blip_base(capsys):
    code, out, _ = run(capsys, "params", "--method", "aurora", "--backbone", "blip-base", "--task", "retrieval", "--json")
    report = json.loads(out)
    assert code == 0
    assert report["method_trainable"] == 125_696
    assert report["head_trainable"] == 2 * 196_864 + 1_538
    assert report["total"] == 223_744_258
    assert report["percent"] == pytest.approx(100 * 125_696 / 223_744_258)


@pytest.mark.parametrize("argv, needle", [
    (["params", "--method", "loraa", "--backbone", "test-tiny"], "valid methods: adalora, adapter, aurora"),
    (["suite", "proxy-cocoo"], "benchmarks: coco, didemo"),
    (["suite", "nogroup.yaml"], "does not exist"),
    (["suite", "BAD_YAML"], "invalid YAML at line 3, column 1: expected ',' or ']'"),
    (["params", "--method", "lora", "--backbone", "/nonexistent/blip"], "has no config.json"),
    (["params", "--method", "lora", "--backbone", "Salesforce/blip-itm-base-coco"], "offline or not cached"),
    (["suite", "retrieval", "--steps", "0"], "train.steps must be a whole number >= 1"),
    (["suite", "retrieval", "--seeds", "1", "1"], "repeat a seed"),
    # port 9 (discard) has no listener on loopback: refused at once, before any pretraining or training
    (["suite", "proxy-coco", "--tracking-uri", "http://127.0.0.1:9"], "cannot reach the MLflow tracking server"),
])
def test_bad_input_gives_one_clear_line(capsys, argv, needle, tmp_path):
    if argv[1] == "BAD_YAML":
        (tmp_path / "bad.yaml").write_text("name: x\nbenchmarks: [proxy-coco\n")
        argv = [argv[0], str(tmp_path / "bad.yaml"), "--output", str(tmp_path / "out")]
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_params_on_the_vqa_model(capsys):
    code, out, _ = run(capsys, "params", "--method", "lora", "--backbone", "test-tiny", "--task", "vqa",
                       "--options", '{"r": 8}', "--json")
    report = json.loads(out)
    assert code == 0
    assert report["head_trainable"] == 0  # VQA trains no head apart from its decoder
    assert report["method_trainable"] == 2 * (8 * (32 + 96) + 12 * 8 * (32 + 32))  # ViT qkv; two BERTs' q/k/v


def test_list_methods_shows_blip_base_counts(capsys):
    code, out, _ = run(capsys, "list", "methods")
    assert code == 0
    assert "125,696 (0.0562 %)" in out  # aurora R=32, as `params` counts it
    assert "n/a" not in out


def test_list_shows_every_registry(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in ("aurora", "lora", "full_finetune", "frozen", "proxy-coco", "proxy-flickr", "coco", "flickr30k"):
        assert name in out


@pytest.mark.slow
def test_a_suite_with_a_failed_trial_exits_1(tmp_path, monkeypatch, capsys):
    """As a script sees it: the command's exit code and closing count. The runner is replaced by one that
    returns a finished and a failed trial (that a raising trial is recorded as failed while the others finish
    is tests/test_end_to_end.py's), so no Ray starts in this test process."""
    from suites.orchestration import runner
    from suites.record import FailedTrial

    def one_failed(specs, name, output_dir, uri, *args, **kwargs):
        from suites.orchestration.tracking import Tracker, tracking_uri

        Tracker(tracking_uri(output_dir, uri))  # the store a suite creates, which the closing lines name
        done, broken = specs
        failure = FailedTrial(spec={}, name=broken.name, row=broken.row, error="TargetingError: nothing",
                              reason="TargetingError: nothing")
        return runner.SuiteResult([], [failure], [])

    monkeypatch.setattr(runner, "run_suite", one_failed)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: exit-code\nbenchmarks: [test-tiny]\ntrain: {steps: 1, batch_size: 4, warmup: 1, eval_every: 1}\n"
                    "methods: {frozen: {}, broken: {method: lora, options: {target_modules: nothing}}}\n")
    assert main(["suite", str(spec), "--output", str(tmp_path / "out")]) == 1
    assert "0 trial(s) finished, 0 stopped early, 1 failed" in capsys.readouterr().out
