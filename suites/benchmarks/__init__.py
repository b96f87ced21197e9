"""Benchmarks: one module each, registering themselves in ``aurora.registry.BENCHMARKS``.

A benchmark owns its data, its heads (trained for every method alike) and its metrics; it never learns
which method was applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from suites.retrieval import RetrievalData


class DataError(ValueError):
    """A missing or malformed data file; the message names the path and the expected layout."""


@dataclass
class RetrievalBenchmark:
    """Image-text retrieval: train on caption records, evaluate TR/IR@1/5/10 as BLIP does."""

    task: ClassVar[str] = "retrieval"
    heads: ClassVar[tuple[str, ...]] = ("vision_proj", "text_proj", "itm_head")
    # BLIP's protocol: the ITC top-k re-ranked by ITM. ``itc_r_mean`` (ITC only) is logged beside it.
    primary_metric: ClassVar[str] = "itm_r_mean"
    name: str = ""
    tier: str = "proxy"
    description: str = ""
    default_backbone: str = "proxy"

    def load(self) -> tuple[RetrievalData, RetrievalData, RetrievalData]:
        """-> (train, val, test)."""
        raise NotImplementedError
