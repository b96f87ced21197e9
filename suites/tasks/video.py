"""Video decoding with PyAV: a fixed number of RGB frames per clip, the way the video benchmarks sample them.

Evaluation samples ``"uniform"``ly (the centre of each of T equal segments, so a clip always gives the same
frames) and training ``"random"``ly (one random frame inside each segment, TSN-style), which covers the clip
without ever returning frames out of order. Clips shorter than T frames repeat frames instead of failing
(Aurora's loader crashes there: ``random.sample(range(vlen), 8)``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

FRAME_MODES = ("uniform", "random")


class VideoError(ValueError):
    """A video that is missing or cannot be decoded; the message names the file."""


def frame_indices(n_total: int, n_frames: int, mode: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """int (n_frames,) sorted frame indices into a clip of ``n_total`` frames.

    The clip is cut into ``n_frames`` equal segments [k * n_total / T, (k + 1) * n_total / T); "uniform" takes
    each segment's centre, "random" a uniform draw inside it. Segments shorter than a frame share it.
    """
    if mode not in FRAME_MODES:
        raise ValueError(f"frame sampling mode must be one of {FRAME_MODES}, got {mode!r}")
    if n_total < 1 or n_frames < 1:
        raise ValueError(f"need at least one frame to sample from and to return, got {n_total} and {n_frames}")
    edges = np.arange(n_frames + 1) * (n_total / n_frames)  # (T + 1,) segment boundaries, in frames
    if mode == "uniform":
        pos = (edges[:-1] + edges[1:]) / 2
    else:
        rng = rng if rng is not None else np.random.default_rng()
        pos = edges[:-1] + rng.random(n_frames) * (edges[1:] - edges[:-1])
    return np.minimum(pos.astype(np.int64), n_total - 1)


def _open(path: str):
    import av  # imported here so that image-only runs never load FFmpeg

    if not os.path.isfile(path):
        raise VideoError(f"missing video file {path}")
    try:
        return av.open(path)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoError(f"cannot open video {path}: {err}") from None


def _count_frames(container, stream) -> int:
    """The container's frame count, or (when the header leaves it at 0) the number of video packets."""
    if stream.frames > 0:
        return stream.frames
    n = sum(1 for packet in container.demux(stream) if packet.size > 0)  # demuxing only: no decoding cost
    container.seek(0)
    return n


def _frames_at(container, stream, wanted: np.ndarray, path: str) -> tuple[dict[int, np.ndarray], int]:
    """Decode from the start up to the last wanted index -> ({index: (H, W, 3) frame}, frames decoded)."""
    import av

    picked: dict[int, np.ndarray] = {}
    keep, last = set(wanted.tolist()), int(wanted[-1])
    seen = 0
    try:
        for seen, frame in enumerate(container.decode(stream), start=1):
            if seen - 1 in keep:  # convert only the frames kept: RGB conversion is most of the cost
                picked[seen - 1] = frame.to_ndarray(format="rgb24")
            if seen > last:
                break
    except av.FFmpegError as err:
        raise VideoError(f"cannot decode video {path}: {err}") from None
    return picked, seen


def _decode(path: str, n_frames: int, mode: str, rng) -> np.ndarray:
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"cannot read video {path}: the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n_total = _count_frames(container, stream)
        if n_total < 1:
            raise VideoError(f"cannot read video {path}: no frames")
        wanted = frame_indices(n_total, n_frames, mode, rng)
        picked, seen = _frames_at(container, stream, wanted, path)
        if len(picked) < len(set(wanted.tolist())):
            # the header promised more frames than the stream holds: sample again over those that exist
            if seen < 1:
                raise VideoError(f"cannot decode video {path}: no frame could be decoded")
            container.seek(0)
            wanted = frame_indices(seen, n_frames, mode, rng)
            picked, _ = _frames_at(container, stream, wanted, path)
    return np.stack([picked[i] for i in wanted.tolist()])  # (T, H, W, 3)


def sample_frames(path: str | os.PathLike, n_frames: int, mode: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB frames of the video at ``path``: ``mode`` "uniform" (evaluation, deterministic)
    or "random" (training, one random frame per equal segment, drawn from ``rng``).

    Raises ``VideoError`` naming the file when it is missing or cannot be decoded.
    """
    if mode not in FRAME_MODES:
        raise ValueError(f"frame sampling mode must be one of {FRAME_MODES}, got {mode!r}")
    return _decode(os.fspath(path), n_frames, mode, rng)


def write_video(path: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray], fps: int = 10) -> None:
    """Write uint8 (T, H, W, 3) RGB frames as an MPEG-4 file (fixtures and tests; H and W must be even)."""
    import av

    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"expected uint8 (T, H, W, 3) frames with even H and W, got shape {frames.shape}")
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"  # the encoder's native format; the decoder converts back to RGB
        stream.options = {"qscale": "2"}  # near-lossless, so tests can check colours
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())  # flush the encoder's delayed frames
