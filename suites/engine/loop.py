"""The method- and task-agnostic training loop: AdamW, warm-up + cosine schedule, the benchmark's objective.

The loop trains whatever has ``requires_grad`` and calls the method's optional hooks; it never asks which
method ran or which task it trains. The task's ``Objective`` says what a batch is and what it costs.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from suites.engine import distributed, state
from suites.engine.data import load_batches
from suites.engine.device import PRECISIONS, Precision, resolve_precision


@dataclass
class TrainConfig:
    """Optimisation settings only; what a task computes (losses, re-ranking) is the benchmark's.

    Settings added after the first ones default to None, meaning the behaviour they had before (so keys
    hashed from these fields, such as the proxy backbone's cache key, stay valid).
    """

    steps: int = 300  # optimizer steps; ``epochs`` replaces it when set
    # items per forward pass, per process in data-parallel training (per micro-batch with grad_accumulation)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 30
    eval_every: int = 100  # an "epoch" for logging: validation every this many steps
    epochs: int | None = None  # passes over the training items, as the official configs count
    grad_accumulation: int | None = None  # micro-batches per optimizer step (None: 1)
    gradient_checkpointing: bool | None = None  # recompute activations in backward (None: off)
    # autocast precision: fp32 | bf16 | fp16 | auto (None: auto, bf16 on GPUs that support it, fp32 on CPU)
    precision: str | None = None
    device: str | None = None  # auto | cpu | cuda | cuda:N (None: auto, the GPU Ray assigned, else CPU)
    # processes loading batches ahead of the loop (None: 0 here; a trial sets its CPUs - 1)
    num_workers: int | None = None
    # evaluate with the method's deltas merged into the weights where it can merge (None: yes)
    merged_eval: bool | None = None
    # save the whole training state at every evaluation point, so a retried trial continues there (None: off)
    checkpoints: bool | None = None

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("warmup", self.warmup, minimum=0)
        for name in ("epochs", "grad_accumulation"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        if self.num_workers is not None:
            _check_int("num_workers", self.num_workers, minimum=0)
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise ValueError(f"train.{name} must be a finite number >= 0, got {value!r}")
        for name in ("gradient_checkpointing", "merged_eval", "checkpoints"):
            if getattr(self, name) not in (None, True, False):
                raise ValueError(f"train.{name} must be true or false, got {getattr(self, name)!r}")
        if self.precision not in (None, "auto", *PRECISIONS):
            raise ValueError(f"train.precision must be one of auto, {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.device is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(self.device)):
            raise ValueError(f"train.device must be auto, cpu, cuda or cuda:N; got {self.device!r}")

    @property
    def accumulation(self) -> int:
        return self.grad_accumulation or 1

    def total_steps(self, n_items: int, processes: int = 1) -> int:
        """Optimizer steps: ``steps``, or ``epochs`` passes over ``n_items`` training items (``processes``
        data-parallel processes each take ``batch_size`` items per micro-batch)."""
        if self.epochs is None:
            return self.steps
        return self.epochs * self.steps_per_epoch(n_items, processes)

    def steps_per_epoch(self, n_items: int, processes: int = 1) -> int:
        return max(1, n_items // (self.batch_size * self.accumulation * processes))


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"train.{name} must be a whole number >= {minimum}, got {value!r}")


class Objective:
    """What one training step of a task computes. The loop draws ``batches`` and minimises ``losses``."""

    def parameters(self) -> list[torch.Tensor]:
        """Tensors outside the model that train with it (e.g. a learnable ITC temperature)."""
        return []

    def batches(self, data: Any, batch_size: int, rng: np.random.Generator) -> Iterator[Any]:
        """Endless training batches (whatever ``losses`` takes), drawn with ``rng`` only."""
        raise NotImplementedError

    def items(self, data: Any) -> int:
        """Training items in ``data`` (what an epoch passes over)."""
        raise NotImplementedError

    def load(self, data: Any, batch: Any, rng: np.random.Generator) -> Any:
        """A batch of ``batches`` -> what ``losses`` takes, on the CPU (files decoded, frames drawn, text
        tokenized). Runs in loader worker processes; random choices use ``rng`` only. Default: the batch."""
        return batch

    def begin_step(self, model: nn.Module, step: int, steps_per_epoch: int) -> None:
        """Before optimizer step ``step`` (0-based; ``steps_per_epoch`` per pass over the data), e.g. to move a
        momentum model. Default: nothing."""

    def state_dict(self) -> dict:
        """What the objective carries from step to step besides trained tensors (a momentum model, feature
        queues), saved with the training state so that a resumed run continues exactly. Default: nothing."""
        return {}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        """Restore ``state_dict()``'s output, its tensors onto ``device``."""

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


def make_optimizer(params: list[torch.Tensor], cfg: TrainConfig, steps: int | None = None):
    """-> (AdamW, its warm-up + cosine schedule over ``steps``, default ``cfg.steps``)."""
    total = cfg.steps if steps is None else steps
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, cfg.warmup))
    return optimizer, schedule


def enable_checkpointing(model: nn.Module) -> None:
    """Recompute each layer's activations in backward (transformers' non-reentrant activation checkpointing).

    transformers also hooks the input embeddings to require grad, which only re-entrant checkpointing needs and
    which breaks BLIP's in-place add of its position embeddings: the hook is removed again.
    """
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.disable_input_require_grads()


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def train_step(model: nn.Module, objective: Objective, data: Any, batches: list, gen: torch.Generator, optimizer,
               precision: Precision | None = None, hooks: dict[str, Callable] | None = None,
               step: int = 0) -> dict[str, torch.Tensor]:
    """One optimizer step over ``batches`` (its micro-batches, gradients accumulated, then averaged over
    data-parallel processes); -> the objective's losses, averaged over the micro-batches and the processes.
    Raises on a non-finite loss."""
    precision = precision or Precision("fp32", model_device(model))
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, torch.Tensor] = {}
    for batch in batches:
        with precision.autocast():
            losses = objective.losses(model, data, batch, gen, hooks)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
        # each micro-batch's mean loss weighs 1/n: the gradient of the mean over the step's batches
        precision.scaler.scale(loss / len(batches) if len(batches) > 1 else loss).backward()
        for k, v in losses.items():
            totals[k] = totals.get(k, 0) + v.detach().float() / len(batches)
    distributed.average_gradients([p for group in optimizer.param_groups for p in group["params"]])
    precision.scaler.step(optimizer)
    precision.scaler.update()
    return distributed.mean_across(totals)


def fit(
    model: nn.Module,
    objective: Objective,
    data: Any,
    cfg: TrainConfig,
    seed: int = 0,
    method=None,
    on_epoch: Callable[[int, dict, Callable[[], dict]], None] | None = None,
    progress: str | None = None,
    resume: dict | None = None,
) -> dict:
    """Train every parameter with ``requires_grad``, plus the objective's own trainable tensors, on
    ``objective``, on the device the model is on. ``method`` (optional) supplies its hooks: ``task_hooks``
    for the objective and ``on_step_end`` after every step.

    ``on_epoch(step, mean losses, state)`` runs at every evaluation point; ``state()`` returns the whole
    training state there (``suites.engine.state``), which ``resume`` continues from exactly. Returns the
    mean losses of the last ``eval_every`` steps and the time spent per step."""
    device = model_device(model)
    precision = Precision(resolve_precision(cfg.precision, device), device)
    rank, processes = distributed.world()
    if processes > 1 and objective.items(data) < cfg.batch_size * processes:
        raise ValueError(f"{processes} processes x batch {cfg.batch_size} need at least {cfg.batch_size * processes} "
                         f"training items, the data has {objective.items(data)}")
    steps = cfg.total_steps(objective.items(data), processes)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    optimizer, schedule = make_optimizer(trainable_parameters(model, objective), cfg, steps)
    hooks = method.task_hooks() if method is not None else {}
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    tensors = state.trained_tensors(model, objective.parameters())
    window: dict[str, list[float]] = {}
    first = 0
    if resume is not None:
        state.restore(resume, tensors, optimizer, schedule, precision.scaler, gen, objective)
        first = resume["step"]
    batches = load_batches(objective, data, cfg.batch_size, steps * cfg.accumulation, rng, seed,
                           cfg.num_workers or 0, pin_memory=device.type == "cuda", start=first * cfg.accumulation,
                           rank=rank, processes=processes)
    bar = _progress(steps, progress)
    bar.update(first)
    model.train()
    start = time.perf_counter()
    per_epoch = cfg.steps_per_epoch(objective.items(data), processes)
    for step in range(first, steps):
        micro = [next(batches) for _ in range(cfg.accumulation)]
        objective.begin_step(model, step, per_epoch)
        losses = train_step(model, objective, data, micro, gen, optimizer, precision, hooks, step)
        schedule.step()
        if method is not None:
            method.on_step_end(model, step, steps)
        for k, v in losses.items():
            window.setdefault(k, []).append(v.detach().item())
        bar.update(1)
        bar.set_postfix({k.removesuffix("_loss"): f"{v:.3f}" for k, v in losses.items() if k != "loss"},
                        refresh=False)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == steps:
            means = {k: float(np.mean(v)) for k, v in window.items()}
            window = {}
            if on_epoch is not None:
                on_epoch(step + 1, means, functools.partial(state.capture, step + 1, tensors, optimizer, schedule,
                                                             precision.scaler, gen, objective))
    bar.close()
    model.eval()
    stats = {**means, "step_time": (time.perf_counter() - start) / max(1, steps - first), "steps": steps}
    return {**stats, "resumed_from_step": first} if resume is not None else stats


def _progress(total: int, desc: str | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=desc is None, mininterval=2.0, leave=False)
