"""Save and load what a method trained (plus the benchmark's heads), once per shared tensor, as safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from aurora.api import Method, unique_parameters


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor (method and heads), each shared tensor under one name."""
    return {name: p.detach().contiguous() for name, p in unique_parameters(model) if p.requires_grad}


def save_trained(model: nn.Module, path: str | Path, method: Method | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {}
    if method is not None:
        metadata = {"method": method.name, "config": json.dumps(method.config.to_dict(), default=list)}
    save_file(trainable_state(model), str(path), metadata=metadata)
    return path


def load_trained(model: nn.Module, path: str | Path) -> nn.Module:
    """Load tensors saved by ``save_trained`` into a model the same method was applied to."""
    state = load_file(str(path))
    expected = set(trainable_state(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise KeyError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    params = dict(unique_parameters(model))
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)
    return model
