"""Save and load what a method trained (plus the benchmark's heads), once per shared tensor, as safetensors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from aurora.api import Method, is_head, unique_parameters


def trainable_state(model: nn.Module, heads: bool = True) -> dict[str, torch.Tensor]:
    """Every trainable tensor, each shared tensor under one name; ``heads=False`` leaves out the benchmark's
    heads (an adapter-only checkpoint)."""
    return {name: p.detach().contiguous().cpu() for name, p in unique_parameters(model)
            if p.requires_grad and (heads or not is_head(model, name))}


def save_trained(model: nn.Module, path: str | Path, method: Method | None = None, heads: bool = True) -> Path:
    """Save the trained tensors as safetensors, with the method's name and config in the metadata. Written
    to a temporary file and renamed, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"heads": str(heads).lower()}
    if method is not None:
        metadata |= {"method": method.name, "config": json.dumps(method.config.to_dict(), default=list)}
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    save_file(trainable_state(model, heads), str(partial), metadata=metadata)
    partial.replace(path)
    return path


class DamagedCheckpoint(ValueError):
    """A weights file whose content is not what was saved."""


def check_sha256(path: str | Path, expected: str) -> Path:
    """``path`` if its SHA-256 is ``expected``, else ``DamagedCheckpoint`` naming both."""
    actual = file_sha256(path)
    if actual != expected:
        raise DamagedCheckpoint(f"{path} is damaged: its SHA-256 is {actual[:16]}..., the run logged "
                                f"{expected[:16]}...; rerun the trial")
    return Path(path)


def file_sha256(path: str | Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_trained(model: nn.Module, path: str | Path) -> nn.Module:
    """Load tensors saved by ``save_trained`` into a model the same method was applied to."""
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            heads = (f.metadata() or {}).get("heads", "true") == "true"
    except SafetensorError as err:  # a truncated file whose run logged no checksum to tell
        raise DamagedCheckpoint(f"{path} is damaged: not a readable safetensors file ({err}); rerun the trial") from None
    expected = set(trainable_state(model, heads))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise KeyError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    params = dict(unique_parameters(model))
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)
    return model
