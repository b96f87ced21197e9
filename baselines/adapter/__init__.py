"""Bottleneck adapters in both towers: sequential (Houlsby et al., ICML 2019, arXiv 1902.00751) or
parallel (He et al., ICLR 2022, arXiv 2110.04366).

Sites: every attention sub-layer (in BERT, self- and cross-attention) and every MLP sub-layer, found through the
model's architecture map. The wrapped module keeps the original as ``.base``, so the backbone's parameters keep their values, and the up-projection
starts at zero, so the adapted model computes exactly what the backbone did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from aurora.api import Method, MethodConfig, TargetingError, freeze, register_method
from aurora.arch import Architecture, architecture_of, locate

PLACEMENTS = ("sequential", "parallel")


@dataclass
class AdapterConfig(MethodConfig):
    width: int = field(default=64, metadata={"help": "bottleneck width w (d -> w -> d)"})
    placement: str = field(default="sequential", metadata={"help": f"one of {PLACEMENTS}"})
    scale: float = field(default=1.0, metadata={"help": "multiplier on the adapter output"})

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {list(PLACEMENTS)}, got {self.placement!r}")
        if self.width < 1:
            raise ValueError(f"width must be a positive integer, got {self.width}")


class Bottleneck(nn.Module):
    """x (..., d) -> scale * up(relu(down(x))) (..., d); up is zero-initialised."""

    def __init__(self, d: int, width: int, scale: float):
        super().__init__()
        self.down = nn.Linear(d, width)
        self.up = nn.Linear(width, d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(torch.relu(self.down(x)))


class After(nn.Module):
    """Sequential: y = base(x); y + adapter(y). Wraps a sub-layer's output projection, before its residual."""

    def __init__(self, base: nn.Linear, adapter: Bottleneck):
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        return y + self.adapter(y)


class Beside(nn.Module):
    """Parallel, pre-LN ViT: base(x) + adapter(x), x the sub-layer's (normalised) input; keeps extra outputs."""

    def __init__(self, base: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, hidden_states: torch.Tensor, **kwargs):
        out = self.base(hidden_states, **kwargs)
        if isinstance(out, tuple):  # an attention sub-layer returns (output, attention probabilities)
            return (out[0] + self.adapter(hidden_states), *out[1:])
        return out + self.adapter(hidden_states)


class BesideResidual(nn.Module):
    """Parallel, post-LN BERT: wraps the sub-layer's output block LN(dense(h) + x), with x the sub-layer's input,
    so the adapter reads x and its output joins the residual sum: LN(dense(h) + x + adapter(x))."""

    def __init__(self, base: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.base(hidden_states, input_tensor + self.adapter(input_tensor))


def _sites(arch: Architecture, model: nn.Module, placement: str) -> list[tuple[nn.Module, str, type[nn.Module], int]]:
    """(parent, attribute, wrapper, d) of every module to wrap, in module order; all located before any is wrapped."""
    sites = []
    for tower in arch.towers(model):
        d = arch.width_of(tower.module)
        for layer in arch.layers_of(tower.module):
            paths, wrapper = (_vit_sites if tower.kind == "vision" else _text_sites)(arch, layer, placement)
            sites += [(*locate(layer, path), wrapper, d) for path in paths]
    return sites


def _vit_sites(arch: Architecture, layer: nn.Module, placement: str) -> tuple[list[str], type[nn.Module]]:
    """Pre-LN: x + attention(ln1(x)), then h + mlp(ln2(h)); after each output projection, or beside each sub-layer."""
    vit = arch.vision
    if placement == "sequential":
        return [vit.attention_out, vit.mlp_out], After
    return [vit.attention, vit.mlp], Beside


def _text_sites(arch: Architecture, layer: nn.Module, placement: str) -> tuple[list[str], type[nn.Module]]:
    """Post-LN: an output block LN(dense(h) + x) closes each sub-layer; after its dense, or around the block."""
    blocks = arch.text_output_blocks(layer)
    if placement == "sequential":
        return [f"{block}.{arch.text.block_dense}" for block in blocks], After
    return blocks, BesideResidual


@register_method
class Adapter(Method):
    """>>> model = aurora.create_method("adapter", width=64, placement="parallel").apply(backbone.model)"""

    name = "adapter"
    config_cls = AdapterConfig
    description = "bottleneck adapters after (Houlsby) or beside (parallel) every attention and MLP sub-layer"

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        arch = architecture_of(model)
        freeze(model)
        sites = _sites(arch, model, cfg.placement)
        if not sites:
            raise TargetingError(f"adapter found no ViT or text layer to adapt in this {arch.name!r} model")
        for parent, attr, wrapper, d in sites:  # d: the width of the residual stream the sub-layer reads and writes
            base = getattr(parent, attr)
            setattr(parent, attr, wrapper(base, Bottleneck(d, cfg.width, cfg.scale)))
        return model
