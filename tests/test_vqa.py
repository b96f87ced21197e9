"""VQA on BlipForQuestionAnswering: the loss, answer ranking, generation, video QA, and the real-tier loaders
on tiny fixtures written in BLIP's VQAv2 JSONs and the original MSRVTT-QA format."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import aurora
from suites.backbones import build_backbone
from suites.benchmarks import BENCHMARKS, DataError
from suites.benchmarks.vqa_real import pre_question
from suites.engine.loop import TrainConfig, fit
from suites.tasks.passes import visual_tokens
from suites.tasks.vqa import (
    VQAData,
    VQAObjective,
    answer_log_likelihood,
    answer_weights,
    encode_questions,
    generate_answers,
    rank_answers,
    special_ids,
    tokenize_answers,
    vqa_losses,
)


@pytest.fixture
def tiny_vqa():
    return build_backbone("test-tiny", task="vqa")


def _jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)


def write_vqav2(root):
    """BLIP's vqa_{train,val,test}.json and a 5-entry answer_list.json; images in BLIP's subfolders, except
    one val image kept only in a flat folder (UniAdapter's base-name layout)."""
    ann, img = root / "coco" / "annotations", root / "coco" / "images"
    ann.mkdir(parents=True)
    train_imgs = [f"train2014/COCO_train2014_{i:012d}.jpg" for i in (1, 2)]
    val_imgs = [f"val2014/COCO_val2014_{i:012d}.jpg" for i in (3, 4)]
    test_img = "test2015/COCO_test2015_000000000005.jpg"
    for seed, name in enumerate(train_imgs + val_imgs[:1] + [test_img]):
        _jpeg(img / name, seed)
    _jpeg(img / val_imgs[1].split("/")[-1], 9)
    ten = ["red", "red", "red", "dark red", "red", "red", "red", "maroon", "red", "red"]
    train = [
        {"question_id": 1001, "question": "What color is the umbrella?", "answer": ten, "image": train_imgs[0],
         "dataset": "vqa"},
        {"question_id": 2001, "question": "How many dogs (in total)?", "answer": ["2"] * 6 + ["two"] * 4,
         "image": train_imgs[1], "dataset": "vqa"},
        {"question_id": 2002, "question": "Is it sunny?", "answer": ["yes"] * 10, "image": train_imgs[1],
         "dataset": "vqa"},
    ]
    val = [
        {"question_id": 3001, "question": "What color is it?", "answer": ["blue"] * 9 + ["red"],
         "image": val_imgs[0], "dataset": "vqa"},
        {"question_id": 4001, "question": "Is it a dog?", "answer": ["no"] * 10, "image": val_imgs[1],
         "dataset": "vqa"},
    ]
    test = [{"question_id": 5001, "question": "What is this?", "image": test_img, "dataset": "vqa"}]
    for name, rows in (("vqa_train", train), ("vqa_val", val), ("vqa_test", test),
                       ("answer_list", ["red", "blue", "2", "yes", "no"])):
        (ann / f"{name}.json").write_text(json.dumps(rows))


def write_msrvtt_qa(root):
    """train/val/test_qa.json of the original release (int id and video_id), plus one ClipBERT-style record
    ("video<N>", no id); two 12-frame fixture videos."""
    from suites.tasks.video import write_video

    qa, videos = root / "msrvtt" / "msrvtt_qa", root / "msrvtt" / "videos"
    qa.mkdir(parents=True)
    videos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in range(2):
        write_video(videos / f"video{n}.mp4", rng.integers(0, 255, (12, 32, 48, 3), dtype=np.uint8))
    rows = [
        {"id": 0, "video_id": 0, "question": "what is a man showing?", "answer": "map", "category_id": 0},
        {"id": 1, "video_id": 1, "question": "who is cooking?", "answer": "woman", "category_id": 1},
        {"video_id": "video1", "question": "what is in the pan?", "answer": "egg"},
    ]
    for split in ("train", "val", "test"):
        (qa / f"{split}_qa.json").write_text(json.dumps(rows))


# ---------------------------------------------------------------- model passes


def test_answer_weights_are_blip_frequencies():
    answers, weights = answer_weights(["red", "red", "red", "dark red", "red", "red", "red", "maroon", "red", "red"])
    assert answers == ["red", "dark red", "maroon"]
    assert weights == pytest.approx([0.8, 0.1, 0.1])


def test_loss_is_weighted_sum_of_answer_likelihoods_over_batch(tiny_vqa):
    model = tiny_vqa.model
    pixels = torch.randn(2, 3, 32, 32)
    targets = [(["red", "dark red"], [0.8, 0.2]), (["two"], [0.05])]
    loss = vqa_losses(model, tiny_vqa, pixels, ["what color", "how many"], targets)["loss"]
    # by hand: each (question, answer) through transformers' decoder loss with reduction="none" (sum over tokens)
    visual = visual_tokens(model, pixels)
    states, mask = encode_questions(model, tiny_vqa, visual, ["what color", "how many"])
    total = 0.0
    for q, (answers, weights) in enumerate(targets):
        for a, w in zip(answers, weights):
            ids, amask = tokenize_answers(tiny_vqa, [a])
            labels = ids.masked_fill(amask == 0, -100)
            nll = model.text_decoder(input_ids=ids, attention_mask=amask, encoder_hidden_states=states[q : q + 1],
                                     encoder_attention_mask=mask[q : q + 1], labels=labels, reduction="none").loss
            total = total + w * nll[0]
    torch.testing.assert_close(loss, total / 2, rtol=1e-5, atol=1e-6)


def test_answers_start_with_dec_and_questions_with_enc(tiny_vqa):
    ids, _ = tokenize_answers(tiny_vqa, ["red", "dark red"])
    dec, sep = special_ids(tiny_vqa)
    assert (ids[:, 0] == dec).all() and sep in ids[0].tolist()
    seen = {}
    orig = tiny_vqa.model.text_encoder.forward

    def spy(*args, **kwargs):
        seen["ids"] = kwargs["input_ids"]
        return orig(*args, **kwargs)

    tiny_vqa.model.text_encoder.forward = spy
    encode_questions(tiny_vqa.model, tiny_vqa, torch.randn(1, 5, 32), ["what color"])
    assert seen["ids"][0, 0] == tiny_vqa.enc_token_id


def test_rank_answers_picks_the_likeliest_of_the_first_token_top_k(tiny_vqa):
    model = tiny_vqa.model
    states, mask = encode_questions(model, tiny_vqa, visual_tokens(model, torch.randn(3, 3, 32, 32)),
                                    ["a b", "c d e", "f"])
    candidates = ["red", "blue", "dark red", "two dogs", "yes", "no"]
    ids, amask = tokenize_answers(tiny_vqa, candidates)
    # with k = every candidate, ranking is the arg-max of the full likelihood
    full = torch.stack([answer_log_likelihood(model, states[q : q + 1].expand(6, -1, -1),
                                              mask[q : q + 1].expand(6, -1), ids, amask) for q in range(3)])
    assert rank_answers(model, states, mask, ids, amask, k=6).tolist() == full.argmax(1).tolist()
    # with k = 1, the candidate with the likeliest first token wins
    first = model.text_decoder(input_ids=ids[:1, :1].expand(3, 1), encoder_hidden_states=states,
                               encoder_attention_mask=mask).logits[:, 0][:, ids[:, 1]]
    assert rank_answers(model, states, mask, ids, amask, k=1).tolist() == first.argmax(1).tolist()


def test_greedy_generation_stops_at_sep(tiny_vqa):
    model = tiny_vqa.model
    states, mask = encode_questions(model, tiny_vqa, visual_tokens(model, torch.randn(2, 3, 32, 32)), ["a", "b c"])
    dec, sep = special_ids(tiny_vqa)
    out = generate_answers(model, states, mask, dec, sep, max_len=5)
    assert len(out) == 2 and all(len(o) <= 4 and sep not in o for o in out)


def test_video_question_reads_every_frame(tiny_vqa):
    frames = torch.randn(2, 3, 3, 32, 32)  # (B, T, 3, S, S)
    visual = visual_tokens(tiny_vqa.model, frames)
    per_frame = tiny_vqa.model.vision_model(pixel_values=frames[:, 1]).last_hidden_state  # (B, N, d)
    n = per_frame.shape[1]
    assert visual.shape == (2, 3 * n, 32)
    torch.testing.assert_close(visual[:, n : 2 * n], per_frame)


def test_proxy_style_arrays_train_and_evaluate(tiny_vqa):
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 255, (3, 2, 32, 32, 3), dtype=np.uint8)  # video QA on in-memory clips
    data = VQAData(clips, ["q one", "q two", "q three"], np.arange(3), [(["a"], [1.0])] * 3, [["a"]] * 3,
                   [0, 1, 2], scoring="exact", kinds=["x", "y", "x"])
    model = tiny_vqa.model
    aurora.create_method("lora", r=2).apply(model)
    stats = fit(model, VQAObjective(tiny_vqa), data, TrainConfig(steps=2, batch_size=2, warmup=1, eval_every=1))
    assert np.isfinite(stats["vqa_loss"])
    bench = BENCHMARKS.get("vqav2")(k_test=2)
    out = bench.evaluate(model, tiny_vqa, data)
    assert set(out) == {"accuracy", "accuracy_x", "accuracy_y"}


# ---------------------------------------------------------------- real formats


def test_pre_question_matches_blip():
    assert pre_question("What color is the (big) umbrella?!") == "what color is the big umbrella?"
    assert pre_question("a, b; c.  ") == "a, b c"


def _one_step_and_evaluation(bench, backbone, train, test):
    method = aurora.create_method("lora", r=2)
    method.apply(backbone.model)
    cfg = TrainConfig(steps=1, batch_size=2, warmup=1, eval_every=1)
    stats = fit(backbone.model, bench.objective(backbone), train, cfg)
    assert np.isfinite(stats["loss"])
    bench.k_test = 3
    metrics = bench.evaluate(backbone.model, backbone, test)
    assert 0.0 <= metrics["accuracy"] <= 100.0
    return metrics


def test_vqav2_parses_trains_and_evaluates(tmp_path, tiny_vqa):
    write_vqav2(tmp_path)
    bench = BENCHMARKS.get("vqav2")(data_root=str(tmp_path))
    train, val, test = bench.load()
    assert train.questions[1] == "how many dogs in total?"
    assert train.targets[0] == (["red", "dark red", "maroon"], pytest.approx([0.8, 0.1, 0.1]))
    assert list(train.visual_idx) == [0, 1, 1] and len(train.visuals) == 2
    assert test.answer_list == ["red", "blue", "2", "yes", "no"] and test.scoring == "vqa"
    assert test.visuals[1].endswith("COCO_val2014_000000000004.jpg")  # found by its base name
    assert bench.submission.answers == [[]] and bench.submission.question_ids == [5001]
    _one_step_and_evaluation(bench, tiny_vqa, train, test)
    path = bench.write_results(tiny_vqa.model, tiny_vqa, tmp_path / "results.json", k_test=2)
    rows = json.loads(path.read_text())
    assert rows == [{"question_id": 5001, "answer": rows[0]["answer"]}] and rows[0]["answer"] in test.answer_list


def test_msrvtt_qa_parses_trains_and_evaluates(tmp_path, tiny_vqa):
    write_msrvtt_qa(tmp_path)
    bench = BENCHMARKS.get("msrvtt-qa")(data_root=str(tmp_path), n_frames=4)
    train, val, test = bench.load()
    assert train.targets[0] == (["map"], [0.05]) and test.scoring == "exact" and test.answer_list is None
    assert list(train.visual_idx) == [0, 1, 1]  # "video1" is video 1
    assert train.question_ids == [0, 1, "train-2"]  # a missing id is synthesised from the line
    assert train.visual_batch(np.array([0]), train=False)[0].shape == (4, 32, 48, 3)
    _one_step_and_evaluation(bench, tiny_vqa, train, test)


def test_msrvtt_qa_with_a_stand_in_frame_sampler(tmp_path, tiny_vqa, monkeypatch):
    """The loader only relies on suites.tasks.video.sample_frames(path, n_frames, mode, rng)."""
    import suites.tasks.video

    write_msrvtt_qa(tmp_path)
    calls = []

    def fake(path, n_frames, mode, rng=None):
        calls.append(mode)
        return np.zeros((n_frames, 24, 24, 3), np.uint8)

    monkeypatch.setattr(suites.tasks.video, "sample_frames", fake)
    bench = BENCHMARKS.get("msrvtt-qa")(data_root=str(tmp_path), n_frames=2)
    train, _, test = bench.load()
    _one_step_and_evaluation(bench, tiny_vqa, train, test)
    assert calls[:2] == ["random", "random"] and calls[-1] == "uniform"


@pytest.mark.parametrize("breakage, needle", [
    (lambda root: (root / "coco/annotations/answer_list.json").unlink(), r"missing annotation file .*answer_list"),
    (lambda root: (root / "coco/annotations/vqa_val.json").write_text("[{"), r"vqa_val\.json is not valid JSON"),
    (lambda root: (root / "coco/annotations/vqa_train.json").write_text('[{"question": "q"}]'),
     r"vqa_train\.json record 0 needs a field 'question_id'"),
    (lambda root: (root / "coco/images/test2015/COCO_test2015_000000000005.jpg").unlink(), r"missing image .*test2015"),
])
def test_vqav2_bad_data_is_one_line_with_path_and_layout(tmp_path, breakage, needle):
    write_vqav2(tmp_path)
    breakage(tmp_path)
    with pytest.raises(DataError, match=needle) as err:
        BENCHMARKS.get("vqav2")(data_root=str(tmp_path)).load()
    assert "expected layout" in str(err.value) and "\n" not in str(err.value)


def test_msrvtt_qa_bad_data(tmp_path):
    write_msrvtt_qa(tmp_path)
    (tmp_path / "msrvtt/videos/video1.mp4").unlink()
    with pytest.raises(DataError, match=r"missing video .*video1\.mp4.*expected layout"):
        BENCHMARKS.get("msrvtt-qa")(data_root=str(tmp_path)).load()
    with pytest.raises(DataError, match="data_root"):
        BENCHMARKS.get("msrvtt-qa")().load()
