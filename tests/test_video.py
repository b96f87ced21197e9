"""Frame sampling and PyAV decoding on tiny generated videos."""

import numpy as np
import pytest

from suites.tasks.video import VideoError, frame_indices, sample_frames, write_video


def _clip(n: int, size: int = 32) -> np.ndarray:
    """uint8 (n, size, size, 3): frame i is a flat grey of level 10 * i, so a decoded frame names its index."""
    return np.repeat((np.arange(n, dtype=np.uint8) * 10)[:, None, None, None], size * size * 3).reshape(
        n, size, size, 3)


def _index_of(frame: np.ndarray) -> int:
    return int(round(frame.mean() / 10))


def test_uniform_indices_are_segment_centres():
    assert frame_indices(16, 4, "uniform").tolist() == [2, 6, 10, 14]
    assert frame_indices(3, 8, "uniform").tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # short clip: repeats


def test_random_indices_one_per_segment():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = frame_indices(20, 4, "random", rng)
        assert [i // 5 for i in idx] == [0, 1, 2, 3]
    draws = {tuple(frame_indices(20, 4, "random", rng)) for _ in range(20)}
    assert len(draws) > 1


def test_bad_mode_is_an_error():
    with pytest.raises(ValueError, match="uniform"):
        frame_indices(10, 2, "middle")


def test_sample_frames_decodes_the_right_frames(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, _clip(12))
    frames = sample_frames(path, 4, "uniform")
    assert frames.dtype == np.uint8 and frames.shape == (4, 32, 32, 3)
    assert [_index_of(f) for f in frames] == frame_indices(12, 4, "uniform").tolist()
    assert np.array_equal(frames, sample_frames(str(path), 4, "uniform"))  # deterministic
    picked = [_index_of(f) for f in sample_frames(path, 3, "random", np.random.default_rng(1))]
    assert [i // 4 for i in picked] == [0, 1, 2]


def test_short_video_repeats_frames(tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, _clip(2))
    frames = sample_frames(path, 8, "random", np.random.default_rng(0))
    assert frames.shape[0] == 8 and sorted({_index_of(f) for f in frames}) == [0, 1]


def test_missing_and_unreadable_videos_name_the_file(tmp_path):
    with pytest.raises(VideoError, match="missing video file .*nope.mp4"):
        sample_frames(tmp_path / "nope.mp4", 4, "uniform")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoError, match="broken.mp4"):
        sample_frames(bad, 4, "uniform")


def test_container_without_frame_count(tmp_path):
    # Matroska headers carry no frame count: the decoder counts packets instead (DiDeMo ships mixed containers)
    path = tmp_path / "clip.mkv"
    write_video(path, _clip(10))
    assert [_index_of(f) for f in sample_frames(path, 5, "uniform")] == [1, 3, 5, 7, 9]
