"""A training run's whole state at a step boundary, so that a resumed run continues exactly where it stopped:
the trained tensors, the optimizer, its schedule and gradient scaler, every generator the loop draws from,
and the position in the batch sequence (batches are numbered, so the loader restarts at the next one)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

STATE_FILE = "training_state.pt"


def trained_tensors(model: nn.Module, extra: Sequence[torch.Tensor] = ()) -> dict[str, torch.Tensor]:
    """Every tensor that trains, by name (the objective's own, such as a learnable temperature, by index)."""
    named = {name: p for name, p in model.named_parameters() if p.requires_grad}
    named.update({f"objective.{i}": t for i, t in enumerate(extra) if t.requires_grad})
    return named


def capture(step: int, tensors: dict[str, torch.Tensor], optimizer, schedule, scaler, gen: torch.Generator,
            objective=None) -> dict:
    """At an evaluation point (the loss window is empty there). ``objective``: its own state goes along."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {
        "step": step, "tensors": {k: v.detach().cpu().clone() for k, v in tensors.items()},
        "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "scaler": scaler.state_dict(),
        "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "cuda_rng": cuda,
        "objective": objective.state_dict() if objective is not None else {},
    }


def restore(state: dict, tensors: dict[str, torch.Tensor], optimizer, schedule, scaler, gen: torch.Generator,
            objective=None) -> None:
    missing = sorted(set(tensors) ^ set(state["tensors"]))
    if missing:
        raise ValueError(f"checkpoint does not match the model being trained: {missing[:5]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            tensor.copy_(state["tensors"][name])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    scaler.load_state_dict(state["scaler"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if objective is not None:
        objective.load_state_dict(state.get("objective", {}), gen.device)


def save(state: dict, folder: str | Path) -> Path:
    path = Path(folder) / STATE_FILE
    torch.save(state, path)
    return path


def load(folder: str | Path) -> dict:
    return torch.load(Path(folder) / STATE_FILE, weights_only=True)
