"""UniAdapter (Lu et al., ICLR 2024, arXiv 2302.06605), as its released code builds
it: one adapter per layer index, its down-projection shared by the ViT block and the
BERT layers of that index, with modality-specific up-projections.

Shapes: x (B, T, d) residual-stream activations, z (B, T, w) the shared bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from aurora.api import Method, MethodConfig, TargetingError, freeze, register_method
from aurora.arch import architecture_of


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


def _attach_vision(layer: nn.Module, mlp_norm: nn.Module, adapter: UniAdapter) -> None:
    """Beside the MLP: the adapter reads the post-attention residual stream (the input of the LayerNorm before
    the MLP) and adds to the layer output."""
    seen = {}
    mlp_norm.register_forward_pre_hook(lambda m, args: seen.__setitem__("h", args[0]))
    layer.register_forward_hook(lambda m, args, out: out + adapter.visual(seen.pop("h")))


def _attach_text(layer: nn.Module, self_attention: nn.Module, cross_attention: nn.Module | None,
                 adapter: UniAdapter, query_residual: bool) -> None:
    """Text-only calls: + text(a_s). Image-grounded calls (cross-attention ran): + multimodal(a_c), and with the
    query residual + text(a_s) as well. a_s, a_c: outputs of the self- and cross-attention sub-layers."""
    seen = {}
    layer.register_forward_pre_hook(lambda m, args: seen.clear())  # a call without cross-attention leaves no a_c
    self_attention.register_forward_hook(lambda m, args, out: seen.__setitem__("a_s", out[0]))
    if cross_attention is not None:
        cross_attention.register_forward_hook(lambda m, args, out: seen.__setitem__("a_c", out[0]))

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
        arch = architecture_of(model)
        if arch.text.cross_attention is None:
            raise TargetingError(f"uniadapter: its multimodal branch reads text cross-attention, which architecture "
                                 f"{arch.name!r} does not have")
        freeze(model)
        vision, text = arch.vit_layers(model), arch.text_layers(model)
        if not vision and not text:
            raise TargetingError(f"uniadapter found no ViT or text layer to adapt in this {arch.name!r} model")
        d = arch.hidden_size(model)  # one adapter serves both towers
        depth = max(len(vision), max((arch.layer_index(t) for t in text), default=-1) + 1)
        device = next(model.parameters()).device
        adapters = nn.ModuleList(UniAdapter(d, cfg.width, cfg.scale, cfg.dropout) for _ in range(depth)).to(device)
        for i, layer in enumerate(vision):  # the model has one ViT, so module order is the layer index
            _attach_vision(layer, layer.get_submodule(arch.vision.mlp_norm), adapters[i])
        for layer in text:
            _attach_text(layer, arch.self_attention(layer), arch.cross_attention(layer),
                         adapters[arch.layer_index(layer)], cfg.query_residual)
        model.uniadapter = adapters
        return model

