"""The real-tier video retrieval loaders on tiny fixtures in ClipBERT's jsonl and the video folder layouts."""

import json

import numpy as np
import pytest
import torch

from suites.benchmarks import BENCHMARKS, DataError
from suites.tasks.retrieval import LossSettings, evaluate, retrieval_losses
from suites.tasks.video import write_video


def _video(path, seed, n_frames=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.random.default_rng(seed).integers(0, 255, (n_frames, 24, 32, 3), dtype=np.uint8))


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_msrvtt(root):
    """video0.mp4, video1.mp4; train.jsonl with 2 lines per clip (with sen_id), test.jsonl 1 line per clip."""
    for i in range(2):
        _video(root / "msrvtt" / "videos" / f"video{i}.mp4", i)
    ann = root / "msrvtt" / "txt_db" / "msrvtt_retrieval"
    _jsonl(ann / "train.jsonl", [{"clip_name": f"video{i}", "caption": f"A man cooks: take {j}.", "sen_id": 2 * i + j}
                                 for i in range(2) for j in range(2)])
    _jsonl(ann / "test.jsonl", [{"clip_name": f"video{i}", "caption": f"someone is talking {i}"} for i in range(2)])


CLIPS = ("12345678@N00_1234567890_0a1b2c3d4e", "87654321@N00_9876543210_ffee00aa11")


def write_didemo(root):
    """ALPRO's folder layout; train.jsonl repeats a clip_name (one line per sentence), test one paragraph per clip."""
    for i, name in enumerate(CLIPS):
        _video(root / "didemo" / "videos" / f"{name}.mp4", 10 + i)
    ann = root / "didemo" / "txt_db" / "didemo_retrieval"
    _jsonl(ann / "train.jsonl", [{"clip_name": CLIPS[0], "caption": "a dog runs onto the grass."},
                                 {"clip_name": CLIPS[0], "caption": "the dog stops near a bench."},
                                 {"clip_name": CLIPS[1], "caption": "a child waves. then the camera pans."}])
    _jsonl(ann / "test.jsonl", [{"clip_name": n, "caption": f"paragraph {i}. it goes on. and ends."}
                                for i, n in enumerate(CLIPS)])


def _one_step_and_eval(bench, tiny, train, test):
    idx = np.arange(len(train.texts))
    tok = tiny.tokenize([train.texts[t] for t in idx])
    pixels = tiny.pixels(train.image_batch(train.txt2img[idx]))  # (B, T, 3, S, S)
    assert pixels.shape[:2] == (len(idx), bench.n_frames)
    tiny.model.train()
    losses = retrieval_losses(tiny.model, pixels, tok["input_ids"], tok["attention_mask"],
                              torch.from_numpy(train.truth(train.txt2img[idx], idx)), torch.tensor(0.07),
                              tiny.enc_token_id, LossSettings(), torch.Generator().manual_seed(0))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    metrics = evaluate(tiny.model, tiny, test, k_test=2)
    assert 0.0 <= metrics["itm_r_mean"] <= 100.0 and 1 <= metrics["itm_img_r_mdr"] <= 2


def test_msrvtt_trains_and_evaluates(tmp_path, tiny):
    write_msrvtt(tmp_path)
    bench = BENCHMARKS.get("msrvtt")(data_root=str(tmp_path), n_frames=3)
    train, val, test = bench.load()
    assert train.n_images == 2 and list(train.txt2img) == [0, 0, 1, 1]  # captions grouped by clip_name
    assert train.texts[0] == "a man cooks take 0" and train.frame_mode == "random"
    assert test.frame_mode == "uniform" and val is test  # no val.jsonl: the test split is logged instead
    _one_step_and_eval(bench, tiny, train, test)


def test_didemo_joins_sentences_into_paragraphs(tmp_path, tiny):
    write_didemo(tmp_path)
    bench = BENCHMARKS.get("didemo")(data_root=str(tmp_path), n_frames=2)
    with pytest.warns(UserWarning, match="joined"):
        train, _, test = bench.load()
    assert train.texts[0] == "a dog runs onto the grass the dog stops near a bench"
    assert list(train.txt2img) == [0, 1] and list(test.txt2img) == [0, 1]
    _one_step_and_eval(bench, tiny, train, test)


def test_didemo_other_containers(tmp_path):
    write_didemo(tmp_path)
    videos = tmp_path / "didemo" / "videos"
    (videos / f"{CLIPS[1]}.mp4").rename(videos / f"{CLIPS[1]}.mkv")  # unconverted originals keep their container
    with pytest.warns(UserWarning):
        _, _, test = BENCHMARKS.get("didemo")(data_root=str(tmp_path)).load()
    assert test.images[1].endswith(".mkv")


def test_missing_files_name_path_and_layout(tmp_path):
    write_msrvtt(tmp_path)
    (tmp_path / "msrvtt" / "videos" / "video1.mp4").unlink()
    with pytest.raises(DataError, match=r"missing video .*video1\.mp4.*expected layout"):
        BENCHMARKS.get("msrvtt")(data_root=str(tmp_path)).load()
    (tmp_path / "msrvtt" / "txt_db" / "msrvtt_retrieval" / "test.jsonl").unlink()
    with pytest.raises(DataError, match=r"test\.jsonl; expected layout"):
        BENCHMARKS.get("msrvtt")(data_root=str(tmp_path)).load()


def test_missing_videos_can_be_dropped(tmp_path):
    write_msrvtt(tmp_path)
    (tmp_path / "msrvtt" / "videos" / "video1.mp4").unlink()
    with pytest.warns(UserWarning, match="dropped 1 of 2"):
        train, _, test = BENCHMARKS.get("msrvtt")(data_root=str(tmp_path), missing_videos="drop").load()
    assert test.n_images == 1 and test.texts == ["someone is talking 0"]


def test_malformed_jsonl(tmp_path):
    write_msrvtt(tmp_path)
    ann = tmp_path / "msrvtt" / "txt_db" / "msrvtt_retrieval"
    (ann / "train.jsonl").write_text('{"clip_name": "video0", "caption": "ok"}\n{broken\n')
    with pytest.raises(DataError, match=r"train\.jsonl line 2 is not valid JSON"):
        BENCHMARKS.get("msrvtt")(data_root=str(tmp_path)).load()
    (ann / "train.jsonl").write_text('{"video": "video0.mp4", "caption": "LAVIS keys"}\n')
    with pytest.raises(DataError, match=r"train\.jsonl line 1 needs a string 'clip_name'"):
        BENCHMARKS.get("msrvtt")(data_root=str(tmp_path)).load()


def test_lmdb_only_root_is_unsupported(tmp_path):
    write_didemo(tmp_path)
    for p in (tmp_path / "didemo" / "videos").iterdir():
        p.unlink()
    (tmp_path / "didemo" / "videos").rmdir()
    lmdb = tmp_path / "didemo" / "vis_db" / "didemo"
    lmdb.mkdir(parents=True)
    (lmdb / "data.mdb").write_bytes(b"")
    with pytest.raises(DataError, match=r"LMDB .*not supported.*videos/<clip_name>\.mp4"):
        BENCHMARKS.get("didemo")(data_root=str(tmp_path)).load()


def test_no_data_root_says_what_to_pass():
    with pytest.raises(DataError, match="data_root"):
        BENCHMARKS.get("didemo")().load()
