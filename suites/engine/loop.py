"""The method- and task-agnostic training loop: AdamW, warm-up + cosine schedule, the benchmark's objective.

The loop trains whatever has ``requires_grad`` and calls the method's optional hooks; it never asks which
method ran or which task it trains. The task's ``Objective`` says what a batch is and what it costs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class TrainConfig:
    """Optimisation settings only; what a task computes (losses, re-ranking) is the benchmark's."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 30
    eval_every: int = 100  # an "epoch" for logging: validation every this many steps


class Objective:
    """What one training step of a task computes. The loop draws ``batches`` and minimises ``losses``."""

    def parameters(self) -> list[torch.Tensor]:
        """Tensors outside the model that train with it (e.g. a learnable ITC temperature)."""
        return []

    def batches(self, data: Any, batch_size: int, rng: np.random.Generator) -> Iterator[Any]:
        """Endless training batches (whatever ``losses`` takes), drawn with ``rng`` only."""
        raise NotImplementedError

    def losses(self, model: nn.Module, data: Any, batch: Any, gen: torch.Generator,
               hooks: dict[str, Callable] | None = None) -> dict:
        """-> {"loss": the scalar to minimise, other detached scalars to log}. ``hooks`` are the method's
        named task hooks (``Method.task_hooks``); an objective calls the names it documents, if present."""
        raise NotImplementedError


def index_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless mini-batches of item indices, a new permutation each pass (a last partial batch is dropped)."""
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def trainable_parameters(model: nn.Module, objective: Objective) -> list[torch.Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    params += [t for t in objective.parameters() if t.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter has requires_grad")
    return params


def make_optimizer(params: list[torch.Tensor], cfg: TrainConfig):
    """-> (AdamW, its warm-up + cosine schedule over ``cfg.steps``)."""
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup))
    return optimizer, schedule


def train_step(model: nn.Module, objective: Objective, data: Any, batch: Any, gen: torch.Generator, optimizer,
               hooks: dict[str, Callable] | None = None, step: int = 0) -> dict[str, torch.Tensor]:
    """One optimizer step on ``batch``; -> the objective's losses. Raises on a non-finite loss."""
    losses = objective.losses(model, data, batch, gen, hooks)
    loss = losses["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return losses


def fit(
    model: nn.Module,
    objective: Objective,
    data: Any,
    cfg: TrainConfig,
    seed: int = 0,
    method=None,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: str | None = None,
) -> dict:
    """Train every parameter with ``requires_grad``, plus the objective's own trainable tensors, on
    ``objective``. ``method`` (optional) supplies its hooks: ``task_hooks`` for the objective and
    ``on_step_end`` after every step. Returns the mean losses of the last ``eval_every`` steps and the time
    spent per step."""
    optimizer, schedule = make_optimizer(trainable_parameters(model, objective), cfg)
    hooks = method.task_hooks() if method is not None else {}
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    batches = objective.batches(data, cfg.batch_size, rng)
    bar = _progress(cfg.steps, progress)
    window: dict[str, list[float]] = {}
    model.train()
    start = time.perf_counter()
    for step in range(cfg.steps):
        losses = train_step(model, objective, data, next(batches), gen, optimizer, hooks, step)
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
