"""Bottleneck adapters in both BLIP towers: sequential (Houlsby et al., ICML 2019, arXiv 1902.00751) or
parallel (He et al., ICLR 2022, arXiv 2110.04366).

Sites: every attention sub-layer (in BERT, self- and cross-attention) and every MLP sub-layer. The wrapped
module keeps the original as ``.base``, so the backbone's parameters keep their values, and the up-projection
starts at zero, so the adapted model computes exactly what the backbone did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.models.blip.modeling_blip import BlipEncoderLayer
from transformers.models.blip.modeling_blip_text import BlipTextLayer

from aurora.api import Method, MethodConfig, TargetingError, freeze, register_method

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
        if isinstance(out, tuple):  # BlipAttention returns (output, attention probabilities)
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


def _sites(model: nn.Module, placement: str) -> list[tuple[nn.Module, str, type[nn.Module]]]:
    """(parent, attribute, wrapper) of every module to wrap."""
    sites = []
    for module in model.modules():
        if isinstance(module, BlipEncoderLayer):  # pre-LN: x + attn(ln1(x)), then h + mlp(ln2(h))
            if placement == "sequential":
                sites += [(module.self_attn, "projection", After), (module.mlp, "fc2", After)]
            else:
                sites += [(module, "self_attn", Beside), (module, "mlp", Beside)]
        elif isinstance(module, BlipTextLayer):  # post-LN: LN(dense(...) + x) closes each sub-layer
            blocks = [(module.attention, "output"), (module, "output")]  # (owner, attribute) of each block
            if hasattr(module, "crossattention"):
                blocks.insert(1, (module.crossattention, "output"))
            if placement == "sequential":
                sites += [(getattr(owner, attr), "dense", After) for owner, attr in blocks]
            else:
                sites += [(owner, attr, BesideResidual) for owner, attr in blocks]
    return sites


@register_method
class Adapter(Method):
    """>>> model = aurora.create_method("adapter", width=64, placement="parallel").apply(backbone.model)"""

    name = "adapter"
    config_cls = AdapterConfig
    description = "bottleneck adapters after (Houlsby) or beside (parallel) every attention and MLP sub-layer"

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        freeze(model)
        sites = _sites(model, cfg.placement)
        if not sites:
            raise TargetingError("adapter found no BLIP layer (BlipEncoderLayer or BlipTextLayer) to adapt")
        for parent, attr, wrapper in sites:
            base = getattr(parent, attr)
            d = _width_of(base)
            setattr(parent, attr, wrapper(base, Bottleneck(d, cfg.width, cfg.scale)))
        return model


def _width_of(module: nn.Module) -> int:
    """d: the width of the residual stream the sub-layer reads and writes."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if hasattr(module, "embed_dim"):  # BlipAttention
        return module.embed_dim
    if hasattr(module, "fc1"):  # BlipMLP
        return module.fc1.in_features
    return module.dense.out_features  # BERT output blocks
