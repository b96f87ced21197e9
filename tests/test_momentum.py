"""Momentum distillation as BLIP fine-tunes retrieval: the averaged tensors, the queue, the mixed targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from suites.backbones import build_backbone
from suites.engine.ema import MomentumTensors
from suites.tasks.retrieval import LossSettings, MomentumSettings, RetrievalData, RetrievalObjective, pair_truth

CAPTIONS = ["a red circle", "two blue squares", "a green ring", "nothing", "a yellow star", "three dots"]


def test_the_average_moves_only_trained_tensors_and_swaps_back():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    model[1].requires_grad_(False)
    ema = MomentumTensors(decay=0.9)
    ema.update(model)  # the first update copies
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    assert set(ema.average) == {"0.weight", "0.bias"}  # frozen weights are their own average
    torch.testing.assert_close(ema.average["0.weight"], 0.9 * start + 0.1 * (start + 1.0))
    online = model[0].weight.detach().clone()
    with ema.swapped_in(model):
        torch.testing.assert_close(model[0].weight.detach(), 0.9 * start + 0.1 * online)
    assert torch.equal(model[0].weight.detach(), online)


def _objective(momentum: MomentumSettings):
    torch.manual_seed(0)
    backbone = build_backbone("test-tiny")
    images = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    data = RetrievalData(images=images, texts=CAPTIONS, txt2img=np.arange(6))
    objective = RetrievalObjective(backbone, torch.tensor(0.1), LossSettings(itm_weight=0.0, momentum=momentum))
    return backbone.model.train(), data, objective


def _itc(model, data, objective, txt_idx, step=0, steps_per_epoch=1):
    objective.begin_step(model, step, steps_per_epoch)
    batch = objective.load(data, np.asarray(txt_idx), np.random.default_rng(0))
    return objective.losses(model, data, batch, torch.Generator().manual_seed(0))["itc_loss"]


def test_with_no_queue_and_alpha_0_distillation_is_itc_within_the_batch():
    model, data, plain = _objective(None)
    baseline = _itc(model, data, plain, [0, 1, 2, 3])
    _, _, distilled = _objective(MomentumSettings(queue_size=0, alpha=0.0))
    # at the first step the momentum model is the online one: the same logits, the same targets
    assert float(_itc(model, data, distilled, [0, 1, 2, 3])) == pytest.approx(float(baseline), rel=1e-6)
    _, _, mixing = _objective(MomentumSettings(queue_size=0, alpha=0.4))
    assert float(_itc(model, data, mixing, [0, 1, 2, 3], step=4, steps_per_epoch=4)) != pytest.approx(float(baseline))


def test_the_queue_keeps_the_latest_pairs_and_knows_their_captions():
    model, data, objective = _objective(MomentumSettings(queue_size=5, alpha=0.0))
    _itc(model, data, objective, [0, 1, 2, 3])
    queue = objective.distillation.queue
    assert queue["txt_idx"].tolist() == [0, 1, 2, 3, -1] and int(queue["ptr"]) == 4
    _itc(model, data, objective, [4, 5, 0, 1])  # wraps around: the oldest entries give way
    assert queue["txt_idx"].tolist() == [5, 0, 1, 3, 4] and int(queue["ptr"]) == 3
    keys = torch.cat([torch.tensor([2, 3]), queue["txt_idx"], torch.tensor([-1])])
    i2t, t2i = pair_truth(data, torch.tensor([2, 3]), keys)
    # a queued pair of the same caption is a positive; an empty slot matches nothing
    assert i2t[0].tolist() == [True, False, False, False, False, False, False, False]
    assert t2i[1].tolist() == [False, True, False, False, False, True, False, False]


def test_alpha_ramps_over_the_first_epoch():
    model, _, objective = _objective(MomentumSettings(alpha=0.4))
    seen = []
    for step in (0, 2, 4, 9):
        objective.begin_step(model, step, steps_per_epoch=4)
        seen.append(objective.distillation.alpha)
    assert seen == pytest.approx([0.0, 0.2, 0.4, 0.4])


@pytest.mark.parametrize("bad, needle", [
    ({"decay": 1.0}, "decay must be a number in [0, 1)"), ({"queue_size": -1}, "queue_size must be a whole number"),
    ({"alpha": 2}, "alpha must be a number in [0, 1]"), ({"queue": 3}, "unexpected keyword"),
])
def test_bad_momentum_settings_are_refused(bad, needle):
    with pytest.raises((ValueError, TypeError), match=needle.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        LossSettings(momentum=bad)


def test_yaml_forms_of_the_setting():
    assert LossSettings(momentum=True).momentum == MomentumSettings()
    assert LossSettings(momentum={"queue_size": 8}).momentum.queue_size == 8
    assert LossSettings(momentum=False).momentum is None
