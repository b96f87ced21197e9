"""An exponential moving average of the tensors that train: BLIP's momentum model, adapted tensors included.

Frozen weights never move, so their average is themselves: only the trained tensors get averaged copies, and
the momentum model is the online model with those copies swapped in (no second copy of the backbone).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from suites.engine.state import trained_tensors


class MomentumTensors:
    def __init__(self, decay: float):
        self.decay = decay
        self.average: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """average <- decay * average + (1 - decay) * online; the first call copies the online tensors."""
        for name, p in trained_tensors(model).items():
            if name in self.average:
                self.average[name].mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)
            else:
                self.average[name] = p.detach().clone()

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module):
        """The model computes with the averaged tensors inside the block (swapped, not copied)."""
        trained = {name: p for name, p in trained_tensors(model).items() if name in self.average}
        for name, p in trained.items():
            p.data, self.average[name] = self.average[name], p.data
        try:
            yield model
        finally:
            for name, p in trained.items():
                p.data, self.average[name] = self.average[name], p.data

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: t.detach().cpu().clone() for name, t in self.average.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device) -> None:
        self.average = {name: t.to(device) for name, t in state.items()}
