"""The VQAv2 evaluation-server file (``aurora-bench eval --vqa-result-file``): a finished VQAv2 trial's saved
weights answer every test2015 question of BLIP's ``vqa_test.json`` (no answers in it), written as the JSON array
EvalAI takes for test-dev and test-std. Fixtures in the official layout with tiny images, a tiny random BLIP."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from suites.cli import main
from suites.orchestration.tracking import Tracker
from suites.orchestration.trial import TrialSpec, run_trial

ANSWER_LIST = ["red", "blue", "2", "yes", "no", "dog"]
TEST_IMAGES = (7, 8, 9)
TEST_IDS = [7000, 7001, 8000, 9000, 9001]  # COCO's question ids: image id * 1000 + k


def _jpeg(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)


def _question(qid: int, text: str, image: str, answers: list[str] | None = None) -> dict:
    rec = {"question_id": qid, "question": text, "image": image, "dataset": "vqa"}
    return rec if answers is None else {**rec, "answer": answers}


def write_vqav2(root) -> None:
    """BLIP's vqa_{train,val,test}.json and answer_list.json under <root>/coco/annotations, images under
    <root>/coco/images/{train2014,val2014,test2015}/; the test questions have no answers."""
    ann, img = root / "coco" / "annotations", root / "coco" / "images"
    ann.mkdir(parents=True)
    train = [f"train2014/COCO_train2014_{i:012d}.jpg" for i in (1, 2)]
    val = [f"val2014/COCO_val2014_{i:012d}.jpg" for i in (3, 4)]
    test = {i: f"test2015/COCO_test2015_{i:012d}.jpg" for i in TEST_IMAGES}
    for seed, name in enumerate([*train, *val, *test.values()]):
        _jpeg(img / name, seed)
    ten = ["red"] * 8 + ["dark red", "maroon"]
    files = {
        "vqa_train": [_question(1000, "What color is the ball?", train[0], ten),
                      _question(2000, "How many dogs?", train[1], ["2"] * 10),
                      _question(2001, "Is it sunny?", train[1], ["yes"] * 10)],
        "vqa_val": [_question(3000, "What color is it?", val[0], ["blue"] * 9 + ["red"]),
                    _question(4000, "Is there a dog?", val[1], ["no"] * 10)],
        "vqa_test": [_question(qid, text, test[qid // 1000]) for qid, text in
                     zip(TEST_IDS, ["What is this?", "Is it red?", "How many cats?", "What animal is it?",
                                    "Is it blue?"])],
        "answer_list": ANSWER_LIST,
    }
    for name, content in files.items():
        (ann / f"{name}.json").write_text(json.dumps(content))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A finished LoRA trial on the VQAv2 fixture and a frozen test-tiny trial, logged as a suite logs them
    -> (output folder, {benchmark: run id})."""
    out = tmp_path_factory.mktemp("testdev")
    write_vqav2(out / "data")
    tracker = Tracker(f"sqlite:///{out / 'mlflow.db'}", artifact_dir=out / "mlartifacts")
    suite = tracker.start_suite("testdev", {"suite": "testdev"})
    specs = {
        "vqav2": TrialSpec(method="lora", benchmark="vqav2", backbone="test-tiny", method_options={"r": 2},
                           benchmark_options={"data_root": str(out / "data"), "k_test": 2}, output_dir=str(out),
                           train={"steps": 1, "batch_size": 2, "warmup": 1, "eval_every": 1}),
        "test-tiny": TrialSpec(method="frozen", benchmark="test-tiny", output_dir=str(out)),
    }
    return out, {name: tracker.log_trial(suite, run_trial(spec)) for name, spec in specs.items()}


def test_eval_writes_every_test_question_once_with_a_string_answer(store, capsys):
    out, runs = store
    path = out / "vqav2_test_results.json"
    capsys.readouterr()
    assert main(["eval", "--run-id", runs["vqav2"], "--output", str(out), "--vqa-result-file", str(path)]) == 0
    assert f"wrote the evaluation-server result file {path}" in capsys.readouterr().out
    rows = json.loads(path.read_text())
    assert isinstance(rows, list) and all(set(r) == {"question_id", "answer"} for r in rows)
    ids = [r["question_id"] for r in rows]
    assert sorted(ids) == TEST_IDS and all(type(i) is int for i in ids)  # every question, each once
    assert all(isinstance(r["answer"], str) and r["answer"] in ANSWER_LIST for r in rows)  # ranked from the list


def test_result_file_needs_vqav2_and_a_folder_in_one_line(store, capsys):
    out, runs = store
    cases = ((runs["test-tiny"], out / "r.json", "unanswered test questions (vqav2); run"),
             (runs["vqav2"], out / "missing" / "r.json", "does not exist"))
    for run_id, path, says in cases:
        capsys.readouterr()
        assert main(["eval", "--run-id", run_id, "--output", str(out), "--vqa-result-file", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
        assert not path.exists()
