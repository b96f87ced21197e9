"""The official recipes as experiment specs, per-benchmark settings in a spec, the image size a real benchmark
feeds its backbone (with the ViT's position embeddings interpolated), and VQAv2's training splits."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from test_video_formats import write_msrvtt
from test_vqa import write_vqav2

from aurora import arch
from suites.backbones import build_backbone
from suites.benchmarks import BENCHMARKS, DataError
from suites.engine.loop import TrainConfig
from suites.orchestration import experiments
from suites.orchestration.experiments import SpecError
from suites.tasks.passes import frame_tokens

OFFICIAL = sorted(p.stem for p in experiments.HERE.glob("official-*.yaml"))


# ---------------------------------------------------------------- the official recipes


def test_the_official_recipes_cover_the_six_benchmarks():
    benchmarks = {b for name in OFFICIAL for b in experiments.load(name).benchmarks}
    assert benchmarks == {"coco", "flickr30k", "msrvtt", "didemo", "vqav2", "msrvtt-qa"}


@pytest.mark.parametrize("name", OFFICIAL)
def test_an_official_recipe_validates_offline(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no checkpoint and no data here: validation reads neither
    exp = experiments.load(name)
    (trial,) = exp.trials()  # one method (Aurora), one seed, one benchmark
    bench = BENCHMARKS.get(trial.benchmark)(**trial.benchmark_options)  # the options build the benchmark
    assert bench.tier == "real" and trial.method == "aurora"
    assert trial.backbone.startswith(str(tmp_path))  # a checkpoint folder, resolved where the command runs
    assert trial.benchmark_options["data_root"] == str(tmp_path / "data")
    cfg = TrainConfig(**trial.train)
    assert cfg.epochs and cfg.warmup == 0 and cfg.weight_decay == 0.05 and cfg.precision == "fp32"
    assert bench.image_size in (224, 384)


# The official configs' numbers (checkpoint, image size, batch over 8 GPUs, learning rate, epochs, k_test, rank)
RECIPES = {
    "official-coco": ("model_base", 384, 128, 1e-5, 6, 256, 32),
    "official-flickr": ("model_base", 384, 128, 1e-4, 4, 128, 32),
    "official-msrvtt": ("model_base", 224, 64, 1e-4, 5, 128, 64),
    "official-didemo": ("model_base", 224, 64, 1e-4, 5, 128, 64),
    "official-vqav2": ("model_vqa", 384, 128, 2e-5, 5, 128, 32),
    "official-msrvtt-qa": ("model_vqa", 224, 96, 2e-5, 5, None, 32),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_an_official_recipe_has_the_official_settings(name):
    checkpoint, size, batch, lr, epochs, k_test, rank = RECIPES[name]
    (trial,) = experiments.load(name).trials()
    options = trial.benchmark_options
    assert trial.backbone.endswith(checkpoint) and options["image_size"] == size
    assert (trial.train["batch_size"], trial.train["lr"], trial.train["epochs"]) == (batch, lr, epochs)
    assert options.get("k_test") == k_test and trial.method_options["rank"] == rank
    if BENCHMARKS.get(trial.benchmark)().task == "retrieval":
        video = trial.benchmark in ("msrvtt", "didemo")
        assert options["rerank_itc_weight"] == (1.0 if video else 0.0)  # ITM + ITC for video, ITM alone for images
        assert options["loss"]["itm_negatives"] == "hard" and options["loss"]["temp_min"] == 0.001
        assert options["loss"]["momentum"] == {"decay": 0.995, "queue_size": 57600, "alpha": 0.4}


def test_the_official_vqa_recipe_trains_on_train_and_val():
    (trial,) = experiments.load("official-vqav2").trials()
    assert BENCHMARKS.get("vqav2")(**trial.benchmark_options).train_splits == ("train", "val")


# ---------------------------------------------------------------- per-benchmark settings


MIXED = """
benchmarks: [coco, vqav2]
backbone: ./models/retrieval
backbone_options: {seed: 3}
train: {lr: 1.0e-4, batch_size: 16}
task: {k_test: 64}
per_benchmark:
  vqav2:
    backbone: ./models/vqa
    backbone_options: {task: vqa}
    train: {lr: 2.0e-5, epochs: 5}
    task: {data_root: ./data, train_splits: [train, val]}
  coco:
    train: {epochs: 6}
benchmark_options:
  coco: {data_root: ./data, image_size: 384}
methods:
  frozen: {}
  aurora: {options: {rank: 8}, train: {batch_size: 8}}
"""


def _parse(text: str) -> experiments.Experiment:
    return experiments.parse(yaml.safe_load(text), "spec.yaml")


def test_per_benchmark_settings_reach_the_trials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trials = {(t.benchmark, t.method): t for t in _parse(MIXED).trials()}
    vqa, coco = trials["vqav2", "aurora"], trials["coco", "aurora"]
    assert vqa.backbone == str(tmp_path / "models" / "vqa") and vqa.backbone_options == {"task": "vqa"}
    assert coco.backbone == str(tmp_path / "models" / "retrieval") and coco.backbone_options == {"seed": 3}
    # suite, then benchmark, then method entry
    assert vqa.train == {"lr": 2e-5, "epochs": 5, "batch_size": 8}
    assert coco.train == {"lr": 1e-4, "epochs": 6, "batch_size": 8}
    assert trials["coco", "frozen"].train == {"lr": 1e-4, "epochs": 6, "batch_size": 16}
    assert vqa.benchmark_options == {"k_test": 64, "data_root": str(tmp_path / "data"), "train_splits": ["train", "val"]}
    assert coco.benchmark_options == {"k_test": 64, "data_root": str(tmp_path / "data"), "image_size": 384}


def test_overrides_are_checked_with_each_benchmarks_settings():
    exp = _parse(MIXED)
    exp.train = {**exp.train, "steps": 10}  # --steps 10
    assert experiments.revalidate(exp) is exp
    exp.per_benchmark["vqav2"].train["lr"] = -1.0  # a bad value only one benchmark's trials would run with
    with pytest.raises(SpecError, match="methods.frozen on vqav2: train.lr must be a finite number"):
        experiments.revalidate(exp)


@pytest.mark.parametrize("per_benchmark, needle", [
    ("{vqa: {train: {lr: 1.0e-4}}}", "'vqa' is not a benchmark of this spec; its benchmarks: ['coco', 'vqav2']"),
    ("{coco: {model: x}}", "per_benchmark.coco: unknown key(s) ['model']; valid keys:"),
    ("{coco: {train: {k_test: 4}}}", "unknown training setting 'k_test' (a task setting: put it under 'task:')"),
    ("{coco: {train: {batch_size: 0}}}", "methods.frozen on coco: train.batch_size must be a whole number"),
    ("{coco: {task: {imagesize: 224}}}", "benchmark 'coco' has no option(s) ['imagesize']; its options:"),
    ("{coco: {task: {loss: {itm_negative: hard}}}}", "loss: unknown key(s) ['itm_negative']; valid keys:"),
    ("{coco: {task: {loss: {momentum: {decay_rate: 0.9}}}}}",
     "loss.momentum: unknown key(s) ['decay_rate']; valid keys: ['alpha', 'decay', 'queue_size']"),
    ("{vqav2: {task: {train_splits: [train, vgg]}}}", "train_splits must be a list of distinct names"),
    ("{coco: [backbone]}", "per_benchmark.coco must be a mapping"),
    ("[coco]", "per_benchmark must be a mapping"),
])
def test_bad_per_benchmark_settings_fail_with_one_line(per_benchmark, needle):
    text = f"benchmarks: [coco, vqav2]\nmethods: {{frozen: {{}}}}\nper_benchmark: {per_benchmark}\n"
    with pytest.raises(SpecError) as err:
        _parse(text)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("body, needle", [
    ("benchmark_options: {cocoo: {data_root: d}}\n", "benchmark_options.cocoo: 'cocoo' is not a benchmark of this spec"),
    ("benchmark_options: {coco: {k_test: 4}}\nper_benchmark: {coco: {task: {k_test: 8}}}\n", "set twice"),
    ("benchmark_options: {coco: {image_size: -1}}\n", "image_size must be a whole number of pixels"),
])
def test_benchmark_options_are_checked_before_any_data_is_read(body, needle):
    with pytest.raises(SpecError, match=needle):
        _parse(f"benchmarks: [coco, vqav2]\nmethods: {{frozen: {{}}}}\n{body}")


# ---------------------------------------------------------------- image size and position embeddings


def _interpolated_by_hand(backbone, size: int):
    """A copy of ``backbone``'s model built for ``size`` px, its patch position embeddings resized by hand with
    bicubic interpolation (align_corners False), as transformers' BLIP and BLIP's own loader do."""
    small = build_backbone("test-tiny", image_size=size).model
    state = backbone.model.state_dict()
    pos = state["vision_model.embeddings.position_embedding"]  # (1, 1 + g*g, d)
    g, d, new = int((pos.shape[1] - 1) ** 0.5), pos.shape[-1], size // 16
    grid = pos[:, 1:].reshape(1, g, g, d).permute(0, 3, 1, 2)  # (1, d, g, g)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    state["vision_model.embeddings.position_embedding"] = torch.cat(
        [pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, new * new, d)], dim=1)
    small.load_state_dict(state)
    return small


@pytest.mark.parametrize("config_size, frame_size", [(32, 16), (48, 32)])
def test_frames_of_another_size_interpolate_the_position_embeddings(config_size, frame_size):
    backbone = build_backbone("test-tiny", image_size=config_size)
    frames = torch.randn(2, 3, 3, frame_size, frame_size)  # (B, T, 3, S, S) clips
    with torch.no_grad():
        tokens = frame_tokens(backbone.model, frames)  # (B*T, 1 + (S/16)^2, d)
        by_hand = arch.vision_tower(_interpolated_by_hand(backbone, frame_size))(
            pixel_values=frames.flatten(0, 1)).last_hidden_state
        truncated = arch.vision_tower(backbone.model)(pixel_values=frames.flatten(0, 1)).last_hidden_state
    assert tokens.shape == (6, 1 + (frame_size // 16) ** 2, backbone.model.config.vision_config.hidden_size)
    torch.testing.assert_close(tokens, by_hand, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(tokens, truncated, atol=1e-4)  # without interpolation: the first positions' embeddings


def test_frames_of_the_configured_size_pass_unchanged(tiny):
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = arch.vision_tower(tiny.model)(pixel_values=pixels).last_hidden_state
        assert torch.equal(frame_tokens(tiny.model, pixels), plain)


def test_the_video_benchmark_feeds_its_own_image_size(tmp_path, tiny):
    write_msrvtt(tmp_path)
    bench = BENCHMARKS.get("msrvtt")(data_root=str(tmp_path), n_frames=2, image_size=16, k_test=2)
    train, _, test = bench.load()
    batch = bench.objective(tiny).load(train, np.arange(len(train.texts)), np.random.default_rng(0))
    assert batch["pixels"].shape == (4, 2, 3, 16, 16) and tiny.image_size == 32  # the backbone is not changed
    metrics = bench.evaluate(tiny.model, tiny, test)
    assert 0.0 <= metrics["itm_r_mean"] <= 100.0
    assert bench.task_config()["image_size"] == 16  # logged with every result
    default = BENCHMARKS.get("msrvtt")(data_root=str(tmp_path))
    assert default.sized(tiny) is tiny  # image_size 0: the backbone's own


# ---------------------------------------------------------------- VQAv2 training splits


def _ids(data) -> list:
    return list(data.question_ids)


def test_vqav2_trains_on_train_alone_by_default(tmp_path):
    write_vqav2(tmp_path)
    train, val, test = BENCHMARKS.get("vqav2")(data_root=str(tmp_path)).load()
    assert _ids(train) == [1001, 2001, 2002] and _ids(test) == [3001, 4001] and _ids(val) == [3001, 4001]


def test_vqav2_train_and_val_hold_out_whole_val_images(tmp_path):
    write_vqav2(tmp_path)
    ann = tmp_path / "coco" / "annotations"
    val = json.loads((ann / "vqa_val.json").read_text())
    val.append({**val[0], "question_id": 3002, "question": "Is it raining?", "answer": ["no"] * 10})  # image 3 again
    (ann / "vqa_val.json").write_text(json.dumps(val))
    bench = BENCHMARKS.get("vqav2")(data_root=str(tmp_path), train_splits=["train", "val"], held_out_images=1)
    train, valid, test = bench.load()
    assert _ids(train) == [1001, 2001, 2002, 4001]  # vqa_train, then vqa_val without the held-out image
    assert _ids(test) == [3001, 3002] and _ids(valid) == [3001, 3002]  # every question of the held-out image
    assert not set(train.visuals) & set(test.visuals)
    assert train.targets[3] == (["no"], [1.0]) and train.visuals[train.visual_idx[3]].endswith("000000000004.jpg")


def test_vqav2_with_visual_genome(tmp_path):
    write_vqav2(tmp_path)
    vg = tmp_path / "vg" / "images"
    (vg / "image").mkdir(parents=True)
    from PIL import Image

    for path in (vg / "image" / "10.jpg", vg / "11.jpg"):  # BLIP's vg_root/image/ and a flat folder
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    rows = [{"question": "What is on the table?", "answer": "cup", "image": "image/10.jpg", "dataset": "vg"},
            {"question": "Where is it?", "answer": "park", "image": "image/11.jpg", "dataset": "vg"}]
    (tmp_path / "coco" / "annotations" / "vg_qa.json").write_text(json.dumps(rows))
    bench = BENCHMARKS.get("vqav2")(data_root=str(tmp_path), train_splits=["train", "vg"])
    train, _, test = bench.load()
    assert _ids(train) == [1001, 2001, 2002, "vg-0", "vg-1"] and _ids(test) == [3001, 4001]
    assert train.targets[3] == (["cup"], [0.2])  # BLIP's fixed weight of a Visual Genome answer
    assert [train.visuals[i] for i in train.visual_idx[3:]] == [str(vg / "image" / "10.jpg"), str(vg / "11.jpg")]


def test_vqav2_missing_visual_genome_names_the_expected_paths(tmp_path):
    write_vqav2(tmp_path)
    bench = BENCHMARKS.get("vqav2")(data_root=str(tmp_path), train_splits=["train", "val", "vg"], held_out_images=1)
    with pytest.raises(DataError) as err:
        bench.load()
    message = str(err.value)
    assert str(tmp_path / "coco" / "annotations" / "vg_qa.json") in message
    assert str(tmp_path / "vg" / "images") in message and "expected layout" in message and "\n" not in message


def test_vqav2_holding_out_every_val_image_is_refused(tmp_path):
    write_vqav2(tmp_path)
    bench = BENCHMARKS.get("vqav2")(data_root=str(tmp_path), train_splits=["val"], held_out_images=5)
    with pytest.raises(DataError, match="holds out every image of vqa_val"):
        bench.load()


def test_vqav2_results_file_uses_the_benchmarks_image_size(tmp_path, monkeypatch):
    import suites.benchmarks.vqa_real as vqa_real

    write_vqav2(tmp_path)
    seen = []
    monkeypatch.setattr(vqa_real, "predict", lambda model, backbone, data, k_test: seen.append(backbone.image_size)
                        or ["red"] * len(data.question_ids))
    tiny = build_backbone("test-tiny", task="vqa")
    bench = BENCHMARKS.get("vqav2")(data_root=str(tmp_path), image_size=16)
    bench.write_results(tiny.model, tiny, tmp_path / "results.json", k_test=2)
    assert seen == [16] and tiny.image_size == 32
