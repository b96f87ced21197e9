"""Aurora's ``apply``: inject mode-approximation deltas and GQT into a vision-language model, owning U, V, core
once. What it adapts is found through the model's architecture map (``aurora.arch``)."""

from __future__ import annotations

import torch
from torch import nn

from aurora.api import Method, TargetingError, freeze, register_method
from aurora.arch import Architecture, architecture_of, replace_module
from aurora.method.config import AuroraConfig
from aurora.method.layer import GatedQuery, MlpIn, MlpOut, SharedFactors, TextLinear, ViTLinear, mode_vectors


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
        arch = architecture_of(model)
        self._check_cross_attention(arch)
        freeze(model)
        shared = SharedFactors(arch.hidden_size(model), cfg.rank, cfg.core)
        n_vision = self._adapt_vision(model, arch, shared) if cfg.vision_targets else 0
        n_text = self._adapt_text(model, arch, shared) if cfg.text_targets else 0
        if n_vision + n_text == 0:
            raise TargetingError(f"aurora found no layer to adapt in this {arch.name!r} model (vision_targets="
                                 f"{list(cfg.vision_targets)}, text_targets={list(cfg.text_targets)})")
        model.aurora_shared = shared
        return model

    def _check_cross_attention(self, arch: Architecture) -> None:
        """GQT gates the cross-attention output and ICE shifts image-grounded [CLS] states: both need a family
        whose text layers cross-attend to the image."""
        needs = [part for part, on in (("GQT (gqt=True)", self.config.gqt), ("ICE (ice=True)", self.config.ice)) if on]
        if needs and arch.text.cross_attention is None:
            raise TargetingError(f"aurora: {' and '.join(needs)} need text cross-attention, which architecture "
                                 f"{arch.name!r} does not have")

    def _adapt_vision(self, model: nn.Module, arch: Architecture, shared: SharedFactors) -> int:
        """Each ViT block's mode vectors as the official code creates them (``CP/vit.py``): block by block, one
        R x 4 tensor for the attention (``CP_attention``: q, k, v in columns 0-2, proj in column 3), then one
        R x 2c for the MLP (``mlp_CP``, R x 8 for c = 4: fc1's chunks in columns 0..c-1, fc2's in c..2c-1), each
        xavier-uniform over its whole shape (``mode_vectors``): the official shapes, bounds and order of draws.
        (The official code's random stream also holds, in between, the inits of the Linear layers it then
        overwrites with the pretrained weights; a method applied to a built model draws its tensors only.)

        Partial ``vision_targets``: both tensors are still drawn in full, with the official shapes (the same
        bounds, and the same random stream, so a targeted weight starts from the same values whichever others
        are targeted), but only the targeted weights' columns are kept as the block's parameter. Untargeted
        columns are not created and are not trainable parameters: qkv alone keeps 3R per block (R x 3), as
        when every weight had its own tensor. The MLP tensor is drawn wherever the MLP chunks (hidden c*d).
        """
        cfg, n = self.config, 0
        for layer in arch.vit_layers(model):
            for owner_path, name, width, sites in self._vision_tensors(arch, layer):
                drawn = mode_vectors(cfg.rank, width)  # drawn even if unused: the stream stays the official one
                kept = [site for site in sites if site[0] in cfg.vision_targets]
                if not kept:
                    continue
                columns = torch.cat([torch.arange(first, end) for _, _, _, first, end in kept])
                owner = layer.get_submodule(owner_path)
                owner.register_parameter(name, nn.Parameter(drawn[:, columns]))  # (R, kept columns), registered once
                start = 0
                for _, path, cls, first, end in kept:
                    view = slice(start, start + end - first)  # the site's columns within the kept tensor
                    replace_module(layer, path, cls, shared, cfg.dropout, owner, name, view)
                    start, n = view.stop, n + 1
        return n

    def _vision_tensors(self, arch: Architecture, layer: nn.Module) -> list[tuple[str, str, int, list]]:
        """The official mode-vector tensors of one ViT layer, in the official creation order: (owner path from
        the layer, parameter name, width, sites), a site being (target, path from the layer, wrapper, first
        column, end column) of the columns that target reads."""
        vit, targets = arch.vision, self.config.vision_targets
        if "qkv" in targets and vit.qkv is None:
            raise TargetingError(f"aurora: vision target 'qkv' needs a fused q/k/v Linear, which the ViT of "
                                 f"architecture {arch.name!r} does not have")
        tensors = [(vit.attention, "aurora_p_attention", 4,
                    [("qkv", vit.qkv, ViTLinear, 0, 3), ("proj", vit.attention_out, ViTLinear, 3, 4)])]
        chunks = _mlp_chunks(arch, layer, required="fc1" in targets or "fc2" in targets)
        if chunks:
            tensors.append((vit.mlp, "aurora_p_mlp", 2 * chunks,
                            [("fc1", vit.mlp_in, MlpIn, 0, chunks), ("fc2", vit.mlp_out, MlpOut, chunks, 2 * chunks)]))
        return tensors

    def _adapt_text(self, model: nn.Module, arch: Architecture, shared: SharedFactors) -> int:
        cfg, n = self.config, 0
        decoder_layers = {id(layer) for layer in arch.text_layers(model, decoder=True)}
        for layer in arch.text_layers(model):
            for kind, sublayer in arch.attention_sublayers(layer):
                core = arch.attention_core(sublayer)
                for short, attr in zip(("q", "k", "v"), arch.text.projections):
                    if f"{kind}.{short}" in cfg.text_targets:
                        setattr(core, attr, TextLinear(getattr(core, attr), shared, cfg.dropout))
                        n += 1
            if cfg.gqt and arch.has_cross_attention(layer):
                gqt = GatedQuery(shared.U.in_features, cfg.gqt_scale, cfg.gqt_init_std)
                gqt.attach(layer, arch.self_attention(layer), arch.cross_attention(layer))
            if cfg.decode_delta == "official" and id(layer) in decoder_layers:
                core = arch.attention_core(arch.self_attention(layer))
                key_value = [getattr(core, attr) for attr in arch.text.projections[1:]]
                _skip_cached_kv_delta(core, key_value, arch.layer_index(layer))
        return n

    def merge(self, model: nn.Module):
        """Every wrapped layer's W + dW, exactly restored after; GQT (input-dependent) keeps running. Not with
        decode_delta="official", whose cached decoding applies the delta to some tokens only."""
        if self.config.decode_delta == "official":
            return None
        was_training = model.training
        model.eval()  # dropout off: the delta is then linear in x
        layers = [m for m in model.modules() if isinstance(m, (ViTLinear, MlpIn, MlpOut, TextLinear))]
        originals = [layer.merge() for layer in layers]
        model.train(was_training)

        def restore() -> None:
            for layer, original in zip(layers, originals):
                layer.unmerge(original)

        return restore

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


def _mlp_chunks(arch: Architecture, layer: nn.Module, required: bool = True) -> int | None:
    """c: Aurora adapts the MLP (d -> c*d -> d) as c d-wide chunks, so c*d must be its hidden size; None where
    it is not and the MLP is not ``required``."""
    fc_in = layer.get_submodule(arch.vision.mlp_in)
    chunks, rest = divmod(fc_in.out_features, fc_in.in_features)
    if rest or not chunks:
        if not required:
            return None
        raise TargetingError(f"aurora: MLP chunking needs an MLP hidden size that is a multiple of the width; the "
                             f"{arch.name!r} ViT's MLP maps {fc_in.in_features} -> {fc_in.out_features} (leave fc1 "
                             "and fc2 out of vision_targets)")
    return chunks


def _skip_cached_kv_delta(attn: nn.Module, key_value: list[nn.Module], cache_index: int) -> None:
    """The official code's incremental decoding: once the KV cache holds earlier positions, the new tokens'
    self-attention k and v are computed without Aurora's delta (q and cross-attention keep theirs).

    attn: the self-attention module called with the cache; key_value: its k and v Linear layers;
    cache_index: the layer's slot in the cache.
    """
    wrapped = [m for m in key_value if hasattr(m, "skip_delta")]

    def before(module, args, kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        cache = getattr(cache, "self_attention_cache", cache)
        cached = cache is not None and cache.get_seq_length(cache_index) > 0
        for m in wrapped:
            m.skip_delta = cached

    def after(module, args, kwargs, output):
        for m in wrapped:
            m.skip_delta = False

    attn.register_forward_pre_hook(before, with_kwargs=True)
    attn.register_forward_hook(after, with_kwargs=True)
