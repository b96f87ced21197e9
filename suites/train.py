"""The method-agnostic training loop: AdamW, warm-up + cosine schedule, BLIP's ITC + ITM losses.

The loop trains whatever has ``requires_grad`` and calls the method's optional hooks; it never asks which
method ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from suites.retrieval import LossSettings, RetrievalData, retrieval_losses


@dataclass
class TrainConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 30
    eval_every: int = 100  # an "epoch" for logging: validation ITC recall every this many steps
    k_test: int = 16  # ITM re-ranks each query's ITC top-k at evaluation
    rerank_itc_weight: float = 1.0  # re-ranking score = ITM logit + this * ITC cosine (BLIP: 1)
    loss: LossSettings = field(default_factory=LossSettings)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    """Endless mini-batches of caption indices, a new permutation each pass."""
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def fit(
    model: nn.Module,
    backbone,
    data: RetrievalData,
    cfg: TrainConfig,
    temp: torch.Tensor,
    seed: int = 0,
    method=None,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: str | None = None,
) -> dict:
    """Train every parameter with ``requires_grad`` (``temp`` too, if it requires grad).

    Returns the mean losses of the last ``eval_every`` steps and the time spent per step.
    """
    params = [p for p in model.parameters() if p.requires_grad] + ([temp] if temp.requires_grad else [])
    if not params:
        raise ValueError("nothing to train: no parameter has requires_grad")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    itm_features = method.itm_features if method is not None else (lambda fused, text, n_pos: fused)
    batches = _batches(len(data.texts), min(cfg.batch_size, len(data.texts)), rng)
    bar = _progress(cfg.steps, progress)
    window: dict[str, list[float]] = {}
    model.train()
    start = time.perf_counter()
    for step in range(cfg.steps):
        txt_idx = next(batches)
        img_idx = data.txt2img[txt_idx]
        truth = torch.from_numpy(data.truth(img_idx, txt_idx))  # (B, B)
        tok = backbone.tokenize([data.texts[t] for t in txt_idx])
        pixels = backbone.pixels(data.image_batch(img_idx))
        losses = retrieval_losses(
            model, pixels, tok["input_ids"], tok["attention_mask"], truth, temp, backbone.enc_token_id,
            cfg.loss, gen, itm_features,
        )
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if method is not None:
            method.on_step_end(model, step, cfg.steps)
        for k, v in losses.items():
            window.setdefault(k, []).append(v.detach().item())
        bar.update(1)
        bar.set_postfix(itc=f"{losses['itc_loss']:.3f}", itm=f"{losses['itm_loss']:.3f}", refresh=False)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            means = {k: float(np.mean(v)) for k, v in window.items()}
            window = {}
            if on_epoch is not None:
                on_epoch(step + 1, means)
    bar.close()
    model.eval()
    return {**means, "step_time": (time.perf_counter() - start) / cfg.steps}


def _progress(total: int, desc: str | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=desc is None, mininterval=2.0, leave=False)
