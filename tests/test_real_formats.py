"""The real-tier retrieval loaders on tiny fixtures in BLIP's exact annotation formats."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import aurora
from aurora.api import train_heads
from suites.benchmarks import BENCHMARKS, DataError
from suites.benchmarks.karpathy import pre_caption
from suites.engine.loop import TrainConfig, fit
from suites.tasks.retrieval import LossSettings, RetrievalObjective, evaluate


def _jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_coco(root):
    """coco_karpathy_*.json as BLIP ships them: train one record per caption (with a restval image from
    val2014), val/test one record per image with caption lists of uneven length."""
    ann, img = root / "coco" / "annotations", root / "coco" / "images"
    ann.mkdir(parents=True)
    names = [f"train2014/COCO_train2014_{i:012d}.jpg" for i in (1, 2)] + ["val2014/COCO_val2014_000000000003.jpg"]
    test_names = [f"val2014/COCO_val2014_{i:012d}.jpg" for i in (10, 11)]
    for seed, name in enumerate(names + test_names):
        _jpeg(img / name, seed)
    train = [{"image": n, "caption": f"A photo. Number {i} ({j})!", "image_id": f"coco_{i}"}
             for i, n in enumerate(names) for j in range(2)]
    evals = [{"image": test_names[0], "caption": [f"caption {k} of the first" for k in range(5)]},
             {"image": test_names[1], "caption": [f"Caption {k}: second" for k in range(6)]}]
    (ann / "coco_karpathy_train.json").write_text(json.dumps(train))
    (ann / "coco_karpathy_val.json").write_text(json.dumps(evals))
    (ann / "coco_karpathy_test.json").write_text(json.dumps(evals))


def write_flickr_aurora_layout(root):
    """flickr30k_*.json with int image_id, images in one flat folder (Aurora's base-name layout)."""
    ann, img = root / "flickr30k" / "annotations", root / "flickr30k" / "images"
    ann.mkdir(parents=True)
    names = [f"flickr30k-images/{1000 + i}.jpg" for i in range(3)]
    for seed, name in enumerate(names):
        _jpeg(img / name.split("/")[-1], seed)
    train = [{"image": n, "caption": f"people {i} walk", "image_id": i} for i, n in enumerate(names)]
    evals = [{"image": n, "caption": [f"a dog {i} {k}" for k in range(5)]} for i, n in enumerate(names)]
    for split, rows in (("train", train), ("val", evals), ("test", evals)):
        (ann / f"flickr30k_{split}.json").write_text(json.dumps(rows))


def test_pre_caption_matches_blip():
    assert pre_caption("A  Cat (sleeping)! On: the mat.", 30) == "a cat sleeping on the mat"
    assert pre_caption("one two three", 2) == "one two"


@pytest.mark.parametrize("name, writer", [("coco", write_coco), ("flickr30k", write_flickr_aurora_layout)])
def test_loader_trains_and_evaluates(name, writer, tmp_path, tiny):
    writer(tmp_path)
    bench = BENCHMARKS.get(name)(data_root=str(tmp_path))
    train, val, test = bench.load()
    if name == "coco":
        assert train.n_images == 3 and len(train.texts) == 6  # records grouped by image_id
        assert list(test.txt2img) == [0] * 5 + [1] * 6  # uneven caption lists, no "x 5" assumption
        assert train.texts[0] == "a photo number 0 0"
    method = aurora.create_method("lora", r=2)
    method.apply(tiny.model)
    train_heads(tiny.model, bench.heads(tiny.model))
    objective = RetrievalObjective(tiny, torch.tensor(0.07), LossSettings())
    fit(tiny.model, objective, train, TrainConfig(steps=1, batch_size=4, warmup=1, eval_every=1))
    metrics = evaluate(tiny.model, tiny, test, k_test=3)
    assert 0.0 <= metrics["itm_r_mean"] <= 100.0 and "itc_txt_r1" in metrics


def test_real_training_images_get_blips_training_transform(tmp_path, tiny):
    write_coco(tmp_path)
    objective = RetrievalObjective(tiny, torch.tensor(0.07), LossSettings())
    idx = np.arange(4)
    for augment in (True, False):
        train, _, test = BENCHMARKS.get("coco")(data_root=str(tmp_path), augment=augment).load()
        assert train.augment is augment and not test.augment  # evaluation: the test transform only
        first, again, other = (objective.load(train, idx, np.random.default_rng(seed))["pixels"] for seed in (1, 1, 2))
        assert first.shape == (4, 3, tiny.image_size, tiny.image_size) and torch.equal(first, again)
        assert torch.equal(first, other) is not augment  # augmented batches follow the loader's generator


def test_missing_file_names_path_and_layout(tmp_path):
    write_coco(tmp_path)
    (tmp_path / "coco" / "annotations" / "coco_karpathy_val.json").unlink()
    with pytest.raises(DataError, match=r"coco_karpathy_val\.json.*expected layout"):
        BENCHMARKS.get("coco")(data_root=str(tmp_path)).load()


def test_missing_image_and_malformed_json(tmp_path):
    write_coco(tmp_path)
    next((tmp_path / "coco" / "images" / "train2014").glob("*.jpg")).unlink()
    with pytest.raises(DataError, match="missing image .*train2014"):
        BENCHMARKS.get("coco")(data_root=str(tmp_path)).load()
    (tmp_path / "coco" / "annotations" / "coco_karpathy_train.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        BENCHMARKS.get("coco")(data_root=str(tmp_path)).load()


def test_no_data_root_says_what_to_pass():
    with pytest.raises(DataError, match="data_root"):
        BENCHMARKS.get("flickr30k")().load()
