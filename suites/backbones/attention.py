"""BLIP's attention through ``F.scaled_dot_product_attention``: the same attention as transformers' eager BLIP
layers (which have no other implementation), in one fused kernel.

Why: the eager layers materialise every (B, heads, L, L') score and probability tensor and keep the probabilities
for backward; BLIP-base's ViT at 384 px has 577 tokens, so that is B x 12 x 577^2 floats per layer. The fused kernels
(flash or memory-efficient on GPUs, the fused CPU kernel here) keep none of it. The math is the same (scale
1/sqrt(head size), the additive mask the layers are given), so outputs differ by float rounding only.

The layers keep their modules (``qkv``, ``query``, ``key``, ``value``, ``projection``), parameter names and
hooks: the instances change class in place (``use_sdpa``), so methods that wrap those Linear modules see
nothing change. What the fused kernel cannot give are the attention probabilities, so ``output_attentions``
reports None for them; a text layer decoding with a KV cache (generation) takes the eager path, whose cache
bookkeeping it keeps.

Shapes: B batch, L queries, L' keys, H heads, dh head size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.blip.modeling_blip import BlipAttention
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention


def _dropout(module: nn.Module) -> float:
    return module.dropout.p if module.training else 0.0


def _additive(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """The layers' additive mask (0 or the float32 minimum) in the queries' dtype, clamped to its range (the
    float32 minimum is -inf in fp16), as the fused kernels take it."""
    if mask is None:
        return None
    return mask.to(like.device).clamp(min=torch.finfo(like.dtype).min).to(like.dtype)


class SdpaVisionAttention(BlipAttention):
    """The ViT's attention: fused q/k/v, no mask."""

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, None]:
        b, n, d = hidden_states.shape
        q, k, v = self.qkv(hidden_states).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)  # (B, H, N, dh)
        context = F.scaled_dot_product_attention(q, k, v, dropout_p=_dropout(self), scale=self.scale)
        return self.projection(context.transpose(1, 2).reshape(b, n, d)), None


class SdpaTextSelfAttention(BlipTextSelfAttention):
    """The text layers' self- and cross-attention core. As the eager core: a cross-attention reads
    ``encoder_attention_mask`` (the suite's ``fix_cross_attention_mask`` passes it), a self-attention
    ``attention_mask`` (padding, and the decoder's causal mask)."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None, cache=None,
                **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        if cache is not None or "past_key_values" in kwargs:
            return super().forward(hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                                   cache=cache, **kwargs)
        cross = encoder_hidden_states is not None
        source = encoder_hidden_states if cross else hidden_states
        mask = encoder_attention_mask if cross else attention_mask
        q = self._heads(self.query(hidden_states))  # (B, H, L, dh)
        k, v = self._heads(self.key(source)), self._heads(self.value(source))  # (B, H, L', dh)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=_additive(mask, q), dropout_p=_dropout(self))
        return context.transpose(1, 2).flatten(-2), None  # (B, L, H*dh)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, H*dh) -> (B, H, L, dh)."""
        return x.unflatten(-1, (-1, self.attention_head_size)).transpose(1, 2)


FUSED = {BlipAttention: SdpaVisionAttention, BlipTextSelfAttention: SdpaTextSelfAttention}


def use_sdpa(model: nn.Module, fused: bool = True) -> nn.Module:
    """Every BLIP attention layer of ``model`` computes through the fused kernel (in place; idempotent); with
    ``fused=False``, through transformers' eager layers again (their attention probabilities, exact outputs)."""
    swap = FUSED if fused else {v: k for k, v in FUSED.items()}
    for module in model.modules():
        if type(module) in swap:
            module.__class__ = swap[type(module)]
    return model
