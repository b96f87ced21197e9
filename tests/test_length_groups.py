"""Training text passes over groups of similar length: the cheapest cut, and the same states and gradients as one
padded pass, in the rows' own order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from suites.backbones import build_backbone
from suites.tasks import passes, retrieval


def brute_force_cost(widths: list[int], pass_cost: int) -> int:
    """The cheapest cut of sorted ``widths`` into consecutive groups, over every set of cut points."""
    n, best = len(widths), None
    for k in range(n):
        for cuts in itertools.combinations(range(1, n), k):
            bounds = [0, *cuts, n]
            cost = sum((b - a) * widths[b - 1] + pass_cost for a, b in zip(bounds, bounds[1:]))
            best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_length_groups_finds_the_cheapest_cut(seed):
    rng = np.random.default_rng(seed)
    widths = sorted(rng.integers(3, 32, size=int(rng.integers(1, 11))).tolist())
    pass_cost = int(rng.choice([0, 8, 40, 200]))
    groups = passes.length_groups(widths, pass_cost)
    assert [g.start for g in groups[1:]] == [g.stop for g in groups[:-1]] and groups[0].start == 0
    assert groups[-1].stop == len(widths)
    cost = sum((g.stop - g.start) * widths[g.stop - 1] + pass_cost for g in groups)
    assert cost == brute_force_cost(widths, pass_cost)


CAPTIONS = ["a", "red circle left", "two blue squares at the top right", "a green ring",
            "one two three four five six seven eight nine ten eleven twelve", "x y", "z", "big small tiny dot"]


@pytest.fixture
def tiny():
    """test-tiny in training mode (no dropout in its config), 8 captions of 1 to 12 words and 8 images."""
    backbone = build_backbone("test-tiny")
    tok = backbone.tokenize(CAPTIONS)
    images = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    return backbone, backbone.model.train(), tok["input_ids"], tok["attention_mask"], backbone.pixels(images)


def test_grouped_text_passes_equal_one_padded_pass(tiny, monkeypatch):
    backbone, model, ids, mask, pixels = tiny
    params = [p for p in model.parameters() if p.requires_grad]

    def states_and_grads():
        model.zero_grad()
        embeds, _ = retrieval.encode_images(model, pixels)
        cls, feat = retrieval.encode_texts(model, ids, mask)
        fused = retrieval.fused_cls(model, embeds, ids, mask, backbone.enc_token_id)
        (feat.sum() + fused.square().sum()).backward()
        return [cls.detach(), fused.detach()] + [p.grad.clone() for p in params if p.grad is not None]

    widths = []
    encoder = type(retrieval.arch.text_encoder(model))
    forward = encoder.forward

    def recording(self, *args, **kwargs):
        widths.append(tuple(kwargs["input_ids"].shape))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(encoder, "forward", recording)
    monkeypatch.setitem(passes.PASS_COST_POSITIONS, "cpu", 4)  # cheap passes: several groups for 8 rows
    grouped = states_and_grads()
    assert len(widths) > 2  # the grouping did split each pass
    assert sum(r * w for r, w in widths) < 0.7 * 2 * ids.numel()
    monkeypatch.setattr(passes, "PASS_COST_POSITIONS", {})
    widths.clear()
    whole = states_and_grads()
    assert widths == [tuple(ids.shape)] * 2
    for a, b in zip(grouped, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
