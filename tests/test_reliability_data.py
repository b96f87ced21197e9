"""Damaged data and unwritable folders fail naming the file or folder: a truncated JPEG (also from a DataLoader
worker process), and an output folder a suite cannot write to (before Ray starts)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from test_real_formats import write_coco
from test_vqa import write_vqav2

from suites.backbones import build_backbone
from suites.benchmarks import BENCHMARKS
from suites.cli import main
from suites.engine.data import load_batches
from suites.tasks.retrieval import ImageError, read_image


def truncate(path) -> None:
    """Cut a JPEG after its headers: PIL opens it, decoding it fails."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_jpeg_is_named_where_it_is_decoded(tmp_path):
    write_coco(tmp_path)
    image = next((tmp_path / "coco" / "images" / "train2014").glob("*.jpg"))
    assert read_image(str(image)).size == (56, 40)  # whole: decoded
    truncate(image)
    with pytest.raises(ImageError, match=f"cannot read image {image} .*truncated"):
        read_image(str(image))


def test_a_truncated_training_image_fails_in_a_loader_worker_naming_the_file(tmp_path):
    """The trial sees the worker's error with the file's name on its last line (a failed trial's one-line
    reason is that last line)."""
    write_coco(tmp_path)
    bench = BENCHMARKS.get("coco")(data_root=str(tmp_path))
    train, _, _ = bench.load()
    for path in train.images:
        truncate(tmp_path / "coco" / "images" / path.split("/images/")[1])
    objective = bench.objective(build_backbone("test-tiny"))
    batches = load_batches(objective, train, batch_size=2, n_batches=1, rng=np.random.default_rng(0), seed=0,
                           num_workers=1)
    with pytest.raises(ImageError) as caught:
        next(batches)
    message = str(caught.value)
    assert "DataLoader worker" in message  # raised in the worker, re-raised here
    last = message.strip().splitlines()[-1]
    assert "cannot read image" in last and any(p in last for p in train.images), last


def test_a_truncated_vqa_image_is_named(tmp_path):
    write_vqav2(tmp_path)
    train, _, _ = BENCHMARKS.get("vqav2")(data_root=str(tmp_path)).load()
    assert len(train.visual_batch(np.array([0]))) == 1
    truncate(tmp_path / "coco" / "images" / train.visuals[0].split("/images/")[1])
    with pytest.raises(ImageError, match=f"cannot read image {train.visuals[0]}"):
        train.visual_batch(np.array([0]))


def _can_write(folder) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process cannot write to: a chmod 555 one, or (for root, whom permission bits do not
    stop) a read-only system folder."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if not _can_write(folder):
            yield folder
        elif os.path.isdir("/sys/kernel") and not _can_write("/sys/kernel"):
            yield "/sys/kernel"
        else:
            pytest.skip("no folder this process cannot write to")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("below", [False, True], ids=["the-folder", "a-new-folder-inside"])
def test_a_read_only_output_folder_stops_the_suite_before_ray(tmp_path, capsys, read_only_folder, below):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: ro\nbenchmarks: [test-tiny]\nmethods: {frozen: {}}\ntrain: {steps: 1, batch_size: 2}\n")
    output = os.path.join(read_only_folder, "out") if below else str(read_only_folder)
    code = main(["suite", str(spec), "--output", output])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"cannot write to the output folder {os.path.realpath(output)}" in err[0] and "--output" in err[0]
    assert not os.path.exists(os.path.join(output, "ray")) and not os.path.exists(os.path.join(output, "mlflow.db"))
