"""Where a trial computes and in which precision.

``device``: "auto" (the GPU Ray assigned to this process, else the CPU), "cpu", "cuda" or "cuda:N". Ray sets
``CUDA_VISIBLE_DEVICES`` for a trial that reserved GPUs, so its GPU is ``cuda:0`` inside the worker; a
data-parallel process makes its own GPU the current one, which "auto" then takes.
``precision``: "fp32", "bf16" or "fp16" autocast around the forward passes; weights, gradients and optimizer
state stay fp32 (fp16 adds a gradient scaler). "auto": bf16 on a GPU that supports it, else fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(ValueError):
    """A device or precision setting this machine cannot honour."""


def resolve_device(setting: str | None = None) -> torch.device:
    if setting in (None, "auto"):
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(setting)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {setting!r}; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(f"unknown device {setting!r}; valid: auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {setting!r} asked for, but this process sees no CUDA GPU (reserve one with "
                          "--gpus-per-trial, or set device: cpu)")
    index = device.index or 0
    if index >= torch.cuda.device_count():
        raise DeviceError(f"device {setting!r} asked for, but this process sees {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)


def resolve_precision(setting: str | None, device: torch.device) -> str:
    if setting in (None, "auto"):
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if setting not in PRECISIONS:
        raise DeviceError(f"unknown precision {setting!r}; valid: auto, {', '.join(PRECISIONS)}")
    return setting


@dataclass
class Precision:
    """Autocast for the forward passes and, in fp16, the gradient scaler that keeps small gradients finite."""

    name: str
    device: torch.device

    def __post_init__(self):
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")

    def autocast(self):
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.name])


def flush_denormals(device: torch.device) -> None:
    """On the CPU, flush denormal floats (below 1.2e-38) to zero, for this process. x86 CPUs compute on them in a
    microcoded slow path: on BLIP-base with random weights, whose gradients reach that range, a LoRA step took 37 s
    instead of 6. A GPU's fast kernels flush them already; only values below that range change."""
    if device.type == "cpu":
        torch.set_flush_denormal(True)


def device_name(device: torch.device) -> str:
    """What computed, for the record: "cpu", or the GPU's name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
