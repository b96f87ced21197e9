"""The contract between methods and the harness.

A method is a picklable config dataclass plus ``apply(model) -> model``. ``apply`` freezes everything the
method does not train and raises if it targets nothing; afterwards ``requires_grad`` is the only record of
what trains. The harness (``param_report``), never the method, counts parameters.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from aurora.registry import METHODS, UnknownNameError

# Parameters that belong to the pretrained backbone carry this attribute (set by ``mark_backbone``), so
# the report can tell backbone weights from tensors a method added, whatever the method renamed.
_BACKBONE_TAG = "_aurora_backbone"
# Names of the head modules the benchmark trains for every method alike (set by ``train_heads``).
_HEADS_ATTR = "aurora_heads"


class TargetingError(ValueError):
    """A method's target patterns matched no module of the model."""


@dataclass
class MethodConfig:
    """Base of every method config: plain dataclass fields, so configs pickle (Ray) and log (MLflow)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Method:
    """Base class. Subclasses set ``name``, ``config_cls``, ``description`` and implement ``apply``.

    Class-level facts read by tests and the harness instead of special-casing names:
      identity_at_init: the adapted model computes exactly what the backbone did before training.
      trains: False for zero-shot evaluation (nothing is fine-tuned, not even the heads).
      tunes_backbone: the method trains some of the backbone's own weights (full fine-tuning, BitFit), not
        only tensors it adds.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    description: ClassVar[str] = ""
    identity_at_init: ClassVar[bool] = True
    trains: ClassVar[bool] = True
    tunes_backbone: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else self.config_cls()

    def apply(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    # Optional hooks with no-op defaults; the loop calls them without asking which method ran.
    def on_step_end(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Called after every optimizer step (schedule-driven methods)."""

    def merge(self, model: nn.Module) -> Callable[[], None] | None:
        """Fold what the method added into the backbone's weights (W + dW, computed once), so that evaluation
        costs what the frozen backbone costs -> a function that restores the unmerged model; None where the
        method cannot merge (evaluation then runs it as it trains). Called in eval mode, without grad."""
        return None

    def task_hooks(self) -> dict[str, Callable]:
        """Named hooks a task's training objective calls, if it defines that name: {name: callable}.

        The loop hands these to the objective (never the method itself); a task documents the names it
        calls and their arguments, and ignores the rest. Default: none.
        """
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


@contextlib.contextmanager
def merged(method: Method, model: nn.Module):
    """Within: the method's deltas merged into the weights where it can merge (``Method.merge``)."""
    with torch.no_grad():
        restore = method.merge(model)
    try:
        yield model
    finally:
        if restore is not None:
            with torch.no_grad():
                restore()


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry under ``cls.name``."""
    if not dataclasses.is_dataclass(cls.config_cls):
        raise TypeError(f"{cls.__name__}.config_cls must be a dataclass")
    return METHODS.register(cls.name, cls)


def create_method(name: str, **options: Any) -> Method:
    """Build a registered method from keyword options of its config dataclass."""
    cls = METHODS.get(name)
    valid = {f.name for f in dataclasses.fields(cls.config_cls)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise UnknownNameError(f"method {name!r} has no option(s) {unknown}; valid options: {sorted(valid)}")
    return cls(cls.config_cls(**options))


def list_methods() -> list[str]:
    return METHODS.names()


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def mark_backbone(model: nn.Module) -> nn.Module:
    """Tag every current parameter as a backbone weight (backbone builders call this)."""
    for p in model.parameters():
        setattr(p, _BACKBONE_TAG, True)
    return model


def train_heads(model: nn.Module, heads: tuple[str, ...]) -> None:
    """Unfreeze the benchmark's heads, the same for every method, and record them for the report."""
    for head in heads:
        module = model.get_submodule(head)
        for p in module.parameters():
            p.requires_grad_(True)
    setattr(model, _HEADS_ATTR, tuple(heads))


def unique_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Named parameters with shared tensors (tied or shared storage) yielded once."""
    seen: set[int] = set()
    for name, p in model.named_parameters(remove_duplicate=True):
        key = id(p) if p.is_meta or not p.numel() else p.data_ptr()  # meta tensors have no storage to compare
        if key in seen:
            continue
        seen.add(key)
        yield name, p


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in prefixes)


def is_head(model: nn.Module, name: str) -> bool:
    """Whether parameter ``name`` belongs to a head recorded by ``train_heads``."""
    return _under(name, getattr(model, _HEADS_ATTR, ()))


@dataclass(frozen=True)
class ParamReport:
    """What trains, counted by the harness. Shared tensors are counted once.

    method_trainable: trainable parameters outside the benchmark's heads.
    head_trainable: trainable parameters of the heads (the same for every method).
    total: parameters of the backbone (without tensors a method added).
    percent: 100 * method_trainable / total.
    method_bytes: bytes of the method's trainable tensors as saved (tensor data, no file header).
    frozen_method: parameters a method added that do not train (e.g. seeded projections).
    """

    method_trainable: int
    head_trainable: int
    total: int
    percent: float
    method_bytes: int
    frozen_method: int = 0

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def param_report(model: nn.Module) -> ParamReport:
    method_trainable = head_trainable = total = frozen_method = method_bytes = 0
    tagged = any(getattr(p, _BACKBONE_TAG, False) for p in model.parameters())
    for name, p in unique_parameters(model):
        is_backbone = getattr(p, _BACKBONE_TAG, False) or not tagged
        total += p.numel() if is_backbone else 0
        if p.requires_grad and is_head(model, name):
            head_trainable += p.numel()
        elif p.requires_grad:
            method_trainable += p.numel()
            method_bytes += p.numel() * p.element_size()
        elif not is_backbone:
            frozen_method += p.numel()
    percent = 100.0 * method_trainable / total if total else 0.0
    return ParamReport(method_trainable, head_trainable, total, percent, method_bytes, frozen_method)
