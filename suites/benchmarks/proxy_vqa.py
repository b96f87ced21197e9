"""Proxy-tier question answering: synthetic questions on synthetic scenes, shifted from the QA pretraining.

``proxy-vqa`` mirrors VQAv2's protocol: 10 annotator answers per question, BLIP's answer weights, answers
ranked over a fixed candidate list, the official VQA accuracy. Its shift from the proxy backbone's QA
pretraining is proxy-coco's (held-out colour-shape pairs, striped backgrounds) plus unseen question
phrasings and synonyms. No real image or question is involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from suites.benchmarks import BENCHMARKS, VQABenchmark
from suites.synthetic import qa, world

DATA_SEED = 23456  # the benchmark's data is fixed; trial seeds change only the training


@dataclass
class ProxyVQA(VQABenchmark):
    shift: world.Shift = field(default_factory=world.Shift)
    train_images: int = 1500
    val_images: int = 100
    test_images: int = 300
    questions_per_image: int = 4
    data_seed: int = DATA_SEED

    def load(self):
        return _load(self.shift, self.train_images, self.val_images, self.test_images, self.questions_per_image,
                     self.data_seed)


@lru_cache(maxsize=4)
def _load(shift, n_train, n_val, n_test, questions, seed):
    return tuple(qa.vqa_data(qa.make_qa_split(seed + k, n, questions, shift))
                 for k, n in enumerate((n_train, n_val, n_test)))


@BENCHMARKS.register("proxy-vqa")
def proxy_vqa(**options) -> ProxyVQA:
    """Options override the fields of ``ProxyVQA`` (sizes, shift)."""
    defaults = dict(
        name="proxy-vqa",
        description="synthetic scenes, VQAv2-style protocol (10 answers, ranking over an answer list); "
        "questions on attributes, counts, existence and relations; held-out colour-shape pairs, striped "
        "backgrounds, new phrasings and synonyms",
        shift=world.Shift(held_out_pairs=True, background="stripes", background_strength=0.5, noise=0.06,
                          new_template_frac=0.5, synonym_frac=0.5),
    )
    return ProxyVQA(**{**defaults, **options})


@dataclass
class ProxyVideoQA(VQABenchmark):
    """MSRVTT-QA's protocol on synthetic clip pairs (see suites.synthetic.clips): one answer per question, greedy generation, exact match."""

    shift: world.Shift = field(default_factory=world.Shift)
    train_clips: int = 800
    val_clips: int = 60
    test_clips: int = 200
    questions_per_clip: int = 3
    n_frames: int = 8
    data_seed: int = DATA_SEED + 100

    def load(self):
        return _load_clips(self.shift, self.train_clips, self.val_clips, self.test_clips, self.questions_per_clip,
                           self.n_frames, self.data_seed)


@lru_cache(maxsize=2)
def _load_clips(shift, n_train, n_val, n_test, questions, n_frames, seed):
    return tuple(qa.video_qa_data(qa.make_clip_qa_split(seed + k, n, questions, shift, n_frames=n_frames))
                 for k, n in enumerate((n_train, n_val, n_test)))


@BENCHMARKS.register("proxy-msrvttqa")
def proxy_msrvttqa(**options) -> ProxyVideoQA:
    """Options override the fields of ``ProxyVideoQA`` (sizes, frames, shift)."""
    defaults = dict(
        name="proxy-msrvttqa",
        description="synthetic clips of objects that keep or change colour, MSRVTT-QA-style protocol (one answer, "
        "greedy generation, exact match); questions on whether an object changes colour, how many do, and "
        "colours; striped "
        "backgrounds, new phrasings and synonyms",
        shift=world.Shift(background="stripes", background_strength=0.5, noise=0.06, new_template_frac=0.5,
                          synonym_frac=0.5),
    )
    return ProxyVideoQA(**{**defaults, **options})
