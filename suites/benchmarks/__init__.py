"""Benchmarks: one module each, registering themselves in ``BENCHMARKS``.

A benchmark owns its data, its heads (trained for every method alike), its task settings, what a training
batch costs (its ``Objective``) and its metrics; it never learns which method was applied. The trial only
talks to this narrow protocol, so one loop serves retrieval, video retrieval and (video) question answering.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from aurora import arch
from aurora.registry import Registry
from suites.engine.loop import Objective
from suites.tasks import retrieval, vqa
from suites.tasks.retrieval import LossSettings, RetrievalData, RetrievalObjective

# Every module of this package registers its benchmarks on import; plugins join through the entry points.
BENCHMARKS: Registry[Callable] = Registry("benchmark", discover=(__name__,),
                                          entry_point_group="aurora_bench.benchmarks")


class DataError(ValueError):
    """A missing or malformed data file; the message names the path and the expected layout."""


@dataclass
class Benchmark:
    """The protocol between a benchmark and the trial: data, heads, task settings, objective, metrics."""

    task: ClassVar[str]  # the backbone's task: "retrieval" or "vqa" (its transformers model class)
    primary_metric: ClassVar[str]
    name: str = ""
    tier: str = "proxy"
    description: str = ""
    default_backbone: str = "proxy"

    @classmethod
    def heads(cls, model) -> tuple[str, ...]:
        """Module names of the heads the task trains for every method alike (none by default)."""
        return ()

    def load(self) -> tuple[Any, Any, Any]:
        """-> (train, val, test); raises ``DataError`` on missing or malformed data, before any training."""
        raise NotImplementedError

    def backbone_options(self) -> dict:
        """Options every backbone builder gets for this benchmark (the task's model class)."""
        return {} if self.task == "retrieval" else {"task": self.task}

    # The fields that are task settings (what the metrics depend on, the same for every method): a suite's
    # ``task:`` section sets them, and every trial logs them.
    task_settings: ClassVar[tuple[str, ...]] = ()

    def task_config(self) -> dict:
        return {name: _plain(getattr(self, name)) for name in self.task_settings}

    def objective(self, backbone) -> Objective:
        raise NotImplementedError

    def validate(self, model, backbone, data) -> dict:
        """Cheap metrics on the validation split, logged every ``eval_every`` steps (as ``val_<key>``); the
        first one is the validation score (higher is better)."""
        raise NotImplementedError

    def evaluate(self, model, backbone, data) -> dict:
        """The reported metrics (``primary_metric`` among them) on the test split."""
        raise NotImplementedError


@dataclass
class RetrievalBenchmark(Benchmark):
    """Image-text retrieval: train on caption records, evaluate TR/IR@1/5/10 as BLIP does."""

    task: ClassVar[str] = "retrieval"
    # The ITC top-k re-ranked by ITM. ``itc_r_mean`` (ITC only) is logged beside it.
    primary_metric: ClassVar[str] = "itm_r_mean"
    task_settings: ClassVar[tuple[str, ...]] = ("k_test", "rerank_itc_weight", "past_topk", "loss")
    # ITM re-ranks each query's ITC top-k at evaluation (BLIP's k_test)
    k_test: int = 16
    # Re-ranking score = ITM logit + w * ITC cosine. None: w = 1 / the backbone's ITC temperature, so both terms
    # are logits and re-ranking weighs ITC's evidence with ITM's. BLIP's w = 1 makes ITC a tie-break, which on
    # the proxy tier lets a weakly adapted ITM undo a better ITC order (README, "What the loop does").
    rerank_itc_weight: float | None = None
    # Candidates past a query's top-k (retrieval.PAST_TOPK): "itc" ranks them in ITC's order below the re-ranked
    # ones; "tied" is BLIP's protocol, all tied at -100 and ordered by numpy's argsort. They differ in R@K for
    # K > k_test and in the median rank: with k_test below 10, "tied" is BLIP's R@10.
    past_topk: str = "itc"
    loss: LossSettings = field(default_factory=LossSettings)  # ITC/ITM training choices

    def __post_init__(self):
        if isinstance(self.loss, dict):  # from a YAML spec
            self.loss = LossSettings(**self.loss)
        _check_whole("k_test", self.k_test, minimum=1)
        weight = self.rerank_itc_weight
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float))
                                   or not math.isfinite(weight)):
            raise ValueError(f"rerank_itc_weight must be a finite number (or null: 1 / temperature), got {weight!r}")
        if self.past_topk not in retrieval.PAST_TOPK:
            raise ValueError(f"past_topk must be one of {list(retrieval.PAST_TOPK)}, got {self.past_topk!r}")

    @classmethod
    def heads(cls, model) -> tuple[str, ...]:
        return arch.head_names(model)  # the ITC projections and the ITM head

    def load(self) -> tuple[RetrievalData, RetrievalData, RetrievalData]:
        """-> (train, val, test)."""
        raise NotImplementedError

    def objective(self, backbone) -> Objective:
        # the backbone's ITC temperature, fixed for every method
        return RetrievalObjective(backbone, torch.tensor(backbone.temp), self.loss)

    def validate(self, model, backbone, data: RetrievalData) -> dict:
        return {"itc_r_mean": retrieval.evaluate(model, backbone, data, itm=False)["itc_r_mean"]}

    def evaluate(self, model, backbone, data: RetrievalData) -> dict:
        return retrieval.evaluate(model, backbone, data, k_test=self.k_test, itc_weight=self.rerank_itc_weight,
                                  past_topk=self.past_topk)


@dataclass
class VQABenchmark(Benchmark):
    """(Video) question answering on ``BlipForQuestionAnswering``: answers ranked over a candidate list
    (VQAv2) or generated (MSRVTT-QA); accuracy in percent. No heads: the answer decoder is backbone."""

    task: ClassVar[str] = "vqa"
    primary_metric: ClassVar[str] = "accuracy"
    task_settings: ClassVar[tuple[str, ...]] = ("k_test", "max_answer_tokens", "vqa_scorer")
    # the answers with the k most likely first tokens are ranked by their full likelihood (BLIP's k_test)
    k_test: int = 16
    max_answer_tokens: int = 10  # greedy generation length, with [DEC] (BLIP: max_length 10)
    # VQA accuracy variant (metrics.VQA_SCORERS): "official" (the current VQA API's vqaEval.py) or "lavis"
    # (the older scorer LAVIS copies); MSRVTT-QA's exact-match scoring ignores it
    vqa_scorer: str = "official"

    def __post_init__(self):
        from suites.tasks.metrics import VQA_SCORERS

        _check_whole("k_test", self.k_test, minimum=1)
        _check_whole("max_answer_tokens", self.max_answer_tokens, minimum=2)  # [DEC] and at least one token
        if self.vqa_scorer not in VQA_SCORERS:
            raise ValueError(f"vqa_scorer must be one of {VQA_SCORERS}, got {self.vqa_scorer!r}")

    def objective(self, backbone) -> Objective:
        return vqa.VQAObjective(backbone)

    def validate(self, model, backbone, data) -> dict:
        return {"accuracy": self.evaluate(model, backbone, data)["accuracy"]}

    def evaluate(self, model, backbone, data) -> dict:
        return vqa.evaluate(model, backbone, data, k_test=self.k_test, max_len=self.max_answer_tokens,
                            scorer=self.vqa_scorer)


def _check_whole(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")


def _plain(value):
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
