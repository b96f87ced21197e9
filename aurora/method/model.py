"""Aurora's ``apply``: inject mode-approximation deltas and GQT into a BLIP model, owning U, V, core once."""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.blip.modeling_blip import BlipAttention, BlipMLP
from transformers.models.blip.modeling_blip_text import BlipTextLayer, BlipTextLMHeadModel

from aurora.api import Method, TargetingError, freeze, register_method
from aurora.method.config import AuroraConfig
from aurora.method.layer import GatedQuery, MlpIn, MlpOut, SharedFactors, TextLinear, ViTLinear


@register_method
class Aurora(Method):
    """Mode approximation with globally shared factors, plus ICE and GQT (arXiv 2305.08381).

    >>> method = aurora.create_method("aurora", rank=32)
    >>> model = method.apply(backbone.model)
    """

    name = "aurora"
    config_cls = AuroraConfig
    description = "Aurora: shared-factor mode approximation + ICE + GQT (NeurIPS 2023)"
    identity_at_init = True  # V = 0 zeroes every delta; GQT starts at ~2e-4 (identity within 1e-3)

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        freeze(model)
        d = _hidden_size(model)
        shared = SharedFactors(d, cfg.rank, cfg.core)
        n_vision = self._adapt_vision(model, shared) if cfg.vision_targets else 0
        n_text = self._adapt_text(model, shared) if cfg.text_targets else 0
        if n_vision + n_text == 0:
            raise TargetingError(
                "Aurora found no layer to adapt (expected BLIP's BlipAttention/BlipMLP or BlipTextLayer modules)"
            )
        model.aurora_shared = shared
        return model

    def _adapt_vision(self, model: nn.Module, shared: SharedFactors) -> int:
        cfg, n = self.config, 0
        for module in list(model.modules()):
            if isinstance(module, BlipAttention):
                wraps = {"qkv": ("qkv", ViTLinear, 3), "proj": ("projection", ViTLinear, 1)}
            elif isinstance(module, BlipMLP):
                chunks = module.fc1.out_features // module.fc1.in_features
                if chunks * module.fc1.in_features != module.fc1.out_features:
                    raise ValueError("Aurora's MLP chunking needs an intermediate size that is a multiple of d")
                wraps = {"fc1": ("fc1", MlpIn, chunks), "fc2": ("fc2", MlpOut, chunks)}
            else:
                continue
            for target, (attr, cls, k) in wraps.items():
                if target in cfg.vision_targets:
                    setattr(module, attr, cls(getattr(module, attr), shared, k, cfg.dropout))
                    n += 1
        return n

    def _adapt_text(self, model: nn.Module, shared: SharedFactors) -> int:
        cfg, n = self.config, 0
        layers = [m for m in model.modules() if isinstance(m, BlipTextLayer)]
        decoder_layers = {id(m) for d in model.modules() if isinstance(d, BlipTextLMHeadModel)
                          for m in d.modules() if isinstance(m, BlipTextLayer)}
        for layer in layers:
            subs = [("self", layer.attention.self)]
            if hasattr(layer, "crossattention"):
                subs.append(("cross", layer.crossattention.self))
            for kind, attn in subs:
                for short, attr in (("q", "query"), ("k", "key"), ("v", "value")):
                    if f"{kind}.{short}" in cfg.text_targets:
                        setattr(attn, attr, TextLinear(getattr(attn, attr), shared, 1, cfg.dropout))
                        n += 1
            if cfg.gqt and hasattr(layer, "crossattention"):
                GatedQuery(shared.U.in_features, cfg.gqt_scale, cfg.gqt_init_std).attach(layer)
            if cfg.decode_delta == "official" and id(layer) in decoder_layers:
                _skip_cached_kv_delta(layer.attention.self)
        return n

    def task_hooks(self) -> dict:
        # ICE acts where retrieval's objective calls "itm_features": its training ITM, nowhere else
        return {"itm_features": self.informative_context} if self.config.ice else {}

    def informative_context(self, fused_cls: torch.Tensor, text_cls: torch.Tensor, n_pos: int) -> torch.Tensor:
        """ICE: positive pairs absorb the batch's mean text [CLS] state (training ITM only).

        fused_cls: (P, d) image-grounded [CLS] states, the first ``n_pos`` rows positive pairs;
        text_cls: (B, d) unimodal text [CLS] states of the batch's captions.
        """
        context = text_cls.mean(dim=0)  # (d,)
        shift = torch.zeros_like(fused_cls)
        shift[:n_pos] = self.config.ice_alpha * context
        return fused_cls + shift


def _skip_cached_kv_delta(attn: nn.Module) -> None:
    """Official incremental decoding (spec 3.8): once the KV cache holds earlier positions, the new tokens'
    self-attention k and v are computed without Aurora's delta (q and cross-attention keep theirs)."""
    wrapped = [m for m in (attn.key, attn.value) if hasattr(m, "skip_delta")]

    def before(module, args, kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        cache = getattr(cache, "self_attention_cache", cache)
        cached = cache is not None and cache.get_seq_length(module.layer_idx) > 0
        for m in wrapped:
            m.skip_delta = cached

    def after(module, args, kwargs, output):
        for m in wrapped:
            m.skip_delta = False

    attn.register_forward_pre_hook(before, with_kwargs=True)
    attn.register_forward_hook(after, with_kwargs=True)


def _hidden_size(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, (BlipAttention, BlipTextLayer)):
            return module.embed_dim if isinstance(module, BlipAttention) else module.attention.self.query.in_features
    raise TargetingError("Aurora found no BLIP attention module in the model")
