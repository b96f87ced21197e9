"""The method- and task-agnostic training loop: AdamW, warm-up + cosine schedule, the benchmark's objective.

The loop trains whatever has ``requires_grad`` and calls the method's optional hooks; it never asks which
method ran, and the benchmark's ``Objective`` (``suites.benchmarks``) says what a batch is and costs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from suites.retrieval import LossSettings


@dataclass
class TrainConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 30
    eval_every: int = 100  # an "epoch" for logging: validation ITC recall every this many steps
    # retrieval: ITM re-ranks each query's ITC top-k at evaluation; VQA: the answers with the k most likely
    # first tokens are ranked by their full likelihood (BLIP's k_test)
    k_test: int = 16
    # Re-ranking score = ITM logit + w * ITC cosine. None: w = 1 / the backbone's ITC temperature, so both terms
    # are logits and re-ranking weighs ITC's evidence with ITM's. BLIP's w = 1 makes ITC a tie-break: on the
    # proxy tier that lets a weakly adapted ITM undo a better ITC order (issue 9; README, "What the loop does").
    rerank_itc_weight: float | None = None
    loss: LossSettings = field(default_factory=LossSettings)  # retrieval's ITC/ITM settings


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def fit(
    model: nn.Module,
    backbone,
    data,
    cfg: TrainConfig,
    temp: torch.Tensor | None = None,
    seed: int = 0,
    method=None,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: str | None = None,
    objective=None,
) -> dict:
    """Train every parameter with ``requires_grad`` on ``objective`` (a ``suites.benchmarks.Objective``:
    the benchmark decides what a batch is and what it costs), plus the objective's own trainable tensors.

    Without an objective the task is retrieval, BLIP's ITC + ITM at temperature ``temp`` (default the
    backbone's; a temperature that requires grad trains too). Returns the mean losses of the last
    ``eval_every`` steps and the time spent per step.
    """
    if objective is None:
        from suites.benchmarks import RetrievalObjective

        objective = RetrievalObjective(temp if temp is not None else torch.tensor(backbone.temp), cfg.loss)
    params = [p for p in model.parameters() if p.requires_grad]
    params += [t for t in objective.parameters() if t.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter has requires_grad")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    batches = objective.batches(data, cfg.batch_size, rng)
    bar = _progress(cfg.steps, progress)
    window: dict[str, list[float]] = {}
    model.train()
    start = time.perf_counter()
    for step in range(cfg.steps):
        losses = objective.losses(model, backbone, data, next(batches), gen, method)
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
        bar.set_postfix({k.removesuffix("_loss"): f"{v:.3f}" for k, v in losses.items() if k != "loss"},
                        refresh=False)
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
