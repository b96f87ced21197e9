"""UniAdapter (Lu et al., ICLR 2024, arXiv 2302.06605), as ``../shared/aurora-spec.md`` section 13.2 describes
the RERV/UniAdapter code: one adapter per layer index, its down-projection shared by the ViT block and the
BERT layers of that index, with modality-specific up-projections.

Shapes: x (B, T, d) residual-stream activations, z (B, T, w) the shared bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.models.blip.modeling_blip import BlipEncoderLayer
from transformers.models.blip.modeling_blip_text import BlipTextLayer

from aurora.api import Method, MethodConfig, TargetingError, freeze, register_method


@dataclass
class UniAdapterConfig(MethodConfig):
    width: int = field(default=512, metadata={"help": "bottleneck width w (UniAdapter's adapter_dim; 512 on BLIP-base)"})
    scale: float = field(default=0.1, metadata={"help": "multiplier on every adapter output"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the bottleneck"})
    query_residual: bool = field(default=True, metadata={"help": "in image-grounded calls, also add the text "
                                                                 "adapter of the self-attention output"})

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"width must be a positive integer, got {self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class UniAdapter(nn.Module):
    """The adapter of one layer index: LN -> down (d -> w) -> ReLU -> dropout, then one up-projection per mode.

    Up-projections start at zero (and the multimodal LayerNorm of a zero vector is zero), so every output
    starts at zero: identity at init.
    """

    def __init__(self, d: int, width: int, scale: float, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.down = nn.Linear(d, width)  # Kaiming-uniform weight (nn.Linear's default), zero bias
        nn.init.zeros_(self.down.bias)
        self.drop = nn.Dropout(dropout)
        self.up_visual, self.up_text, self.up_multi = (nn.Linear(width, d) for _ in range(3))
        for up in (self.up_visual, self.up_text, self.up_multi):
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)
        self.norm_multi = nn.LayerNorm(d)
        self.scale = scale

    def _z(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(torch.relu(self.down(self.norm(x))))  # (B, T, w)

    def visual(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up_visual(self._z(x))

    def text(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up_text(self._z(x))

    def multimodal(self, x: torch.Tensor) -> torch.Tensor:
        z = self._z(x)
        return self.scale * self.norm_multi(self.up_multi(z) + self.up_text(z))


def _attach_vision(layer: BlipEncoderLayer, adapter: UniAdapter) -> None:
    """Beside the MLP: the adapter reads the post-attention residual stream (layer_norm2's input) and adds to
    the layer output."""
    seen = {}
    layer.layer_norm2.register_forward_pre_hook(lambda m, args: seen.__setitem__("h", args[0]))
    layer.register_forward_hook(lambda m, args, out: out + adapter.visual(seen.pop("h")))


def _attach_text(layer: BlipTextLayer, adapter: UniAdapter, query_residual: bool) -> None:
    """Text-only calls: + text(a_s). Image-grounded calls (cross-attention ran): + multimodal(a_c), and with the
    query residual + text(a_s) as well. a_s, a_c: outputs of the self- and cross-attention sub-layers."""
    seen = {}
    layer.register_forward_pre_hook(lambda m, args: seen.clear())  # a call without cross-attention leaves no a_c
    layer.attention.register_forward_hook(lambda m, args, out: seen.__setitem__("a_s", out[0]))
    if hasattr(layer, "crossattention"):
        layer.crossattention.register_forward_hook(lambda m, args, out: seen.__setitem__("a_c", out[0]))

    def add(module, args, out):
        a_s, a_c = seen.pop("a_s"), seen.pop("a_c", None)  # pop: keep no activation alive past the call
        if a_c is None:
            return out + adapter.text(a_s)
        out = out + adapter.multimodal(a_c)
        return out + adapter.text(a_s) if query_residual else out

    layer.register_forward_hook(add)


@register_method
class UniAdapterMethod(Method):
    """>>> model = aurora.create_method("uniadapter", width=512).apply(backbone.model)

    Adapters are owned once by the model (``model.uniadapter``, one per layer index); ViT block i, text-encoder
    layer i and, for VQA, answer-decoder layer i all use adapter i.
    """

    name = "uniadapter"
    config_cls = UniAdapterConfig
    description = "UniAdapter: per-layer shared down-projection, per-modality up-projections, query residual"

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        freeze(model)
        vision = [m for m in model.modules() if isinstance(m, BlipEncoderLayer)]
        text = [m for m in model.modules() if isinstance(m, BlipTextLayer)]
        if not vision and not text:
            raise TargetingError("uniadapter found no BLIP layer (BlipEncoderLayer or BlipTextLayer) to adapt")
        d = vision[0].embed_dim if vision else text[0].attention.self.query.in_features
        depth = max(len(vision), max((t.layer_num for t in text), default=-1) + 1)
        device = next(model.parameters()).device
        adapters = nn.ModuleList(UniAdapter(d, cfg.width, cfg.scale, cfg.dropout) for _ in range(depth)).to(device)
        for i, layer in enumerate(vision):  # a BLIP model has one ViT, so module order is the layer index
            _attach_vision(layer, adapters[i])
        for layer in text:
            _attach_text(layer, adapters[layer.layer_num], cfg.query_residual)
        model.uniadapter = adapters
        return model

