"""Proxy-tier video retrieval: synthetic clips whose captions say which objects change colour over time, which
no single frame shows (see ``suites.synthetic.clips``).

``proxy-msrvtt`` mirrors MSR-VTT (several captions per training clip, one per test clip) and ``proxy-didemo``
DiDeMo (one paragraph per clip, more objects). Both are shifted from the pretraining scenes: clips instead
of images, textured backgrounds, more noise, captions of colour changes and unseen synonyms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from suites.benchmarks import BENCHMARKS, RetrievalBenchmark
from suites.engine.loop import index_batches
from suites.synthetic import clips, world
from suites.tasks.retrieval import RetrievalObjective, VideoRetrievalData

DATA_SEED = 23456  # the benchmark's data is fixed; trial seeds change only the training


@dataclass
class ProxyVideoRetrieval(RetrievalBenchmark):
    shift: world.Shift = field(default_factory=world.Shift)
    train_clips: int = 1500
    val_clips: int = 100
    test_clips: int = 300
    train_captions: int = 5  # per clip; val and test have one, as MSR-VTT 1k-A and DiDeMo
    n_objects: tuple[int, ...] = (1, 2)
    styles: tuple[str, ...] = ("all", "count", "all", "one", "all")  # caption k of a clip: styles[k % len]
    stored_frames: int = 8  # frames rendered per clip
    n_frames: int = 4  # frames sampled per clip for the model (4 of 8 always show a mover in 3 cells)
    group: int = 3  # clips per group: the same objects, other colour changes (consecutive indices)
    data_seed: int = DATA_SEED
    group_batches: bool = False  # train on batches of whole groups (see GroupBatches)

    def objective(self, backbone):
        if not self.group_batches:
            return super().objective(backbone)
        return GroupBatches(backbone, torch.tensor(backbone.temp), self.loss, self.group)

    def load(self):
        splits = _load(self.shift, (self.train_clips, self.val_clips, self.test_clips), self.train_captions,
                       tuple(self.n_objects), tuple(self.styles), self.stored_frames, self.data_seed, self.group)
        return tuple(_as_data(s, self.n_frames, mode) for s, mode in zip(splits, ("random", "uniform", "uniform")))


class GroupBatches(RetrievalObjective):
    """ITC + ITM on batches of whole clip groups (clips g*k .. g*k + g - 1), one random caption per clip.

    With random batches a clip's group mates are almost never in its batch, and object identity alone brings
    the loss down. A group mate in the batch is a negative that only several frames tell apart, for ITC and as
    ITM's hard negative.
    """

    def __init__(self, backbone, temp, settings, group: int):
        super().__init__(backbone, temp, settings)
        self.group = group  # clips per group, the benchmark's

    def batches(self, data: VideoRetrievalData, batch_size: int, rng: np.random.Generator):
        first = np.searchsorted(data.txt2img, np.arange(data.n_images))  # each clip's first caption
        n_caps = np.diff(np.append(first, len(data.txt2img)))
        g = self.group
        for groups in index_batches(data.n_images // g, max(1, batch_size // g), rng):
            clip_idx = (g * groups[:, None] + np.arange(g)).ravel()  # (B,) group mates side by side
            yield first[clip_idx] + (rng.random(len(clip_idx)) * n_caps[clip_idx]).astype(np.int64)


@lru_cache(maxsize=4)
def _load(shift, sizes, train_captions, n_objects, styles, stored_frames, seed, group) -> tuple[clips.ClipSplit, ...]:
    # one caption per evaluation clip: "all" styles only, so it describes every object
    eval_styles = tuple(s for s in styles if s != "one") or styles
    return tuple(
        clips.make_split(seed + k, n, train_captions if k == 0 else 1, shift, n_objects,
                         styles if k == 0 else eval_styles, stored_frames, group=group)
        for k, n in enumerate(sizes)
    )


def _as_data(split: clips.ClipSplit, n_frames: int, mode: str) -> VideoRetrievalData:
    """Clips as retrieval data, with the clip world's truth oracle for false-negative masking."""
    facts = [clips.clip_facts(c) for c in split.scenes]
    caps = split.captions

    def true_of(img_idx: np.ndarray, txt_idx: np.ndarray) -> np.ndarray:
        return np.array([[caps[t].facts <= facts[i] for t in txt_idx] for i in img_idx], dtype=bool)

    return VideoRetrievalData(split.clips, split.texts, split.txt2img, true_of, n_frames=n_frames, frame_mode=mode)


@BENCHMARKS.register("proxy-msrvtt")
def proxy_msrvtt(**options) -> ProxyVideoRetrieval:
    """Options override the fields of ``ProxyVideoRetrieval`` (sizes, frames, shift)."""
    defaults = dict(
        name="proxy-msrvtt",
        description="synthetic clips, MSR-VTT-style protocol (5 captions per training clip, 1 per test clip); "
        "captions say which objects keep their colour and which change between two; striped backgrounds, unseen "
        "synonyms",
        shift=world.Shift(background="stripes", background_strength=0.5, noise=0.06, synonym_frac=0.2),
    )
    return ProxyVideoRetrieval(**{**defaults, **options})


@BENCHMARKS.register("proxy-didemo")
def proxy_didemo(**options) -> ProxyVideoRetrieval:
    defaults = dict(
        name="proxy-didemo",
        description="synthetic clips, DiDeMo-style paragraph-to-video retrieval (one paragraph per clip, 2-3 "
        "objects); checkerboard backgrounds, unseen synonyms",
        shift=world.Shift(background="checker", background_strength=0.5, noise=0.06, synonym_frac=0.2),
        train_captions=1, n_objects=(2, 3), styles=("paragraph",),
    )
    return ProxyVideoRetrieval(**{**defaults, **options})
