"""Benchmarks: one module each, registering themselves in ``aurora.registry.BENCHMARKS``.

A benchmark owns its data, its heads (trained for every method alike), what a training batch costs (its
``Objective``) and its metrics; it never learns which method was applied. The training loop
(``suites.train.fit``) and the trial (``suites.trial.run_trial``) only talk to this narrow protocol, so one
loop serves retrieval, video retrieval and (video) question answering.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from suites.retrieval import LossSettings, RetrievalData, evaluate, retrieval_losses

if TYPE_CHECKING:
    from suites.train import TrainConfig


class DataError(ValueError):
    """A missing or malformed data file; the message names the path and the expected layout."""


class Objective:
    """What one training step of a task computes. The loop draws ``batches`` and minimises ``losses``."""

    def parameters(self) -> list[torch.Tensor]:
        """Tensors outside the model that train with it (e.g. a learnable ITC temperature)."""
        return []

    def batches(self, data: Any, batch_size: int, rng: np.random.Generator) -> Iterator[Any]:
        """Endless training batches (whatever ``losses`` takes), drawn with ``rng`` only."""
        raise NotImplementedError

    def losses(self, model, backbone, data: Any, batch: Any, gen: torch.Generator, method=None) -> dict:
        """-> {"loss": the scalar to minimise, other detached scalars to log}. ``method`` only serves the
        optional method hooks the task calls (e.g. ``itm_features``)."""
        raise NotImplementedError


def index_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless mini-batches of item indices, a new permutation each pass (a last partial batch is dropped)."""
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


@dataclass
class RetrievalObjective(Objective):
    """BLIP's ITC + ITM on (image, caption) pairs. A batch is a set of caption indices."""

    temp: torch.Tensor  # the ITC temperature: fixed in fine-tuning, an nn.Parameter in pretraining
    settings: LossSettings

    def parameters(self) -> list[torch.Tensor]:
        return [self.temp]

    def batches(self, data: RetrievalData, batch_size: int, rng: np.random.Generator):
        return index_batches(len(data.texts), min(batch_size, len(data.texts)), rng)

    def losses(self, model, backbone, data: RetrievalData, txt_idx: np.ndarray, gen, method=None) -> dict:
        img_idx = data.txt2img[txt_idx]
        truth = torch.from_numpy(data.truth(img_idx, txt_idx))  # (B, B)
        tok = backbone.tokenize([data.texts[t] for t in txt_idx])
        pixels = backbone.pixels(data.image_batch(img_idx))
        itm_features = method.itm_features if method is not None else (lambda fused, text, n_pos: fused)
        return retrieval_losses(model, pixels, tok["input_ids"], tok["attention_mask"], truth, self.temp,
                                backbone.enc_token_id, self.settings, gen, itm_features)


@dataclass
class Benchmark:
    """The protocol between a benchmark and the loop: data, heads, objective, metrics."""

    task: ClassVar[str]  # the backbone's task: "retrieval" or "vqa" (its transformers model class)
    heads: ClassVar[tuple[str, ...]] = ()
    primary_metric: ClassVar[str]
    name: str = ""
    tier: str = "proxy"
    description: str = ""
    default_backbone: str = "proxy"

    def load(self) -> tuple[Any, Any, Any]:
        """-> (train, val, test); raises ``DataError`` on missing or malformed data, before any training."""
        raise NotImplementedError

    def backbone_options(self) -> dict:
        """Options every backbone builder gets for this benchmark (the task's model class)."""
        return {} if self.task == "retrieval" else {"task": self.task}

    def objective(self, backbone, cfg: TrainConfig) -> Objective:
        raise NotImplementedError

    def validate(self, model, backbone, data, cfg: TrainConfig) -> dict:
        """Cheap metrics on the validation split, logged every ``eval_every`` steps (as ``val_<key>``)."""
        raise NotImplementedError

    def evaluate(self, model, backbone, data, cfg: TrainConfig) -> dict:
        """The reported metrics (``primary_metric`` among them) on the test split."""
        raise NotImplementedError


@dataclass
class RetrievalBenchmark(Benchmark):
    """Image-text retrieval: train on caption records, evaluate TR/IR@1/5/10 as BLIP does."""

    task: ClassVar[str] = "retrieval"
    heads: ClassVar[tuple[str, ...]] = ("vision_proj", "text_proj", "itm_head")
    # BLIP's protocol: the ITC top-k re-ranked by ITM. ``itc_r_mean`` (ITC only) is logged beside it.
    primary_metric: ClassVar[str] = "itm_r_mean"

    def load(self) -> tuple[RetrievalData, RetrievalData, RetrievalData]:
        """-> (train, val, test)."""
        raise NotImplementedError

    def objective(self, backbone, cfg: TrainConfig) -> Objective:
        # the backbone's ITC temperature, fixed for every method
        return RetrievalObjective(torch.tensor(backbone.temp), cfg.loss)

    def validate(self, model, backbone, data: RetrievalData, cfg: TrainConfig) -> dict:
        return {"itc_r_mean": evaluate(model, backbone, data, itm=False)["itc_r_mean"]}

    def evaluate(self, model, backbone, data: RetrievalData, cfg: TrainConfig) -> dict:
        return evaluate(model, backbone, data, k_test=cfg.k_test, itc_weight=cfg.rerank_itc_weight)


class VQAObjective(Objective):
    """BLIP's weighted answer-generation loss. A batch is a set of question indices."""

    def batches(self, data, batch_size: int, rng: np.random.Generator):
        return index_batches(len(data.questions), min(batch_size, len(data.questions)), rng)

    def losses(self, model, backbone, data, idx: np.ndarray, gen, method=None) -> dict:
        from suites.vqa import vqa_losses

        # training frames are drawn at random (videos); the draw follows the trial's torch generator
        rng = np.random.default_rng(int(torch.randint(2**31 - 1, (1,), generator=gen)))
        pixels = backbone.pixels(data.visual_batch(idx, train=True, rng=rng))
        return vqa_losses(model, backbone, pixels, [data.questions[i] for i in idx], [data.targets[i] for i in idx])


@dataclass
class VQABenchmark(Benchmark):
    """(Video) question answering on ``BlipForQuestionAnswering``: answers ranked over a candidate list
    (VQAv2) or generated (MSRVTT-QA); accuracy in percent. No heads: the answer decoder is backbone."""

    task: ClassVar[str] = "vqa"
    primary_metric: ClassVar[str] = "accuracy"
    max_answer_tokens: int = 10  # greedy generation length, with [DEC] (BLIP: max_length 10)

    def objective(self, backbone, cfg: TrainConfig) -> Objective:
        return VQAObjective()

    def validate(self, model, backbone, data, cfg: TrainConfig) -> dict:
        return {"accuracy": self.evaluate(model, backbone, data, cfg)["accuracy"]}

    def evaluate(self, model, backbone, data, cfg: TrainConfig) -> dict:
        from suites.vqa import evaluate as vqa_evaluate

        return vqa_evaluate(model, backbone, data, k_test=cfg.k_test, max_len=self.max_answer_tokens)
