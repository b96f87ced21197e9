"""Where each supported transformers architecture keeps what methods adapt and what tasks read.

Methods and tasks never name a model class or a module path themselves: they ask the model's ``Architecture``
(``architecture_of(model)``, keyed by ``model.config.model_type``). This is the one module that names a
family's classes and modules; supporting another family (CLIP, BLIP-2) is one more ``Architecture(...)``
registered at the bottom, and a method that needs something the new entry lacks raises ``TargetingError``.

Paths are dotted attribute paths (as ``nn.Module.get_submodule`` reads them), relative to the module each
field's comment names. Towers and layers are found by class, the task heads by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import nn
from transformers.models.blip.modeling_blip import BlipEncoderLayer, BlipVisionModel
from transformers.models.blip.modeling_blip_text import BlipTextLayer, BlipTextLMHeadModel, BlipTextModel

from aurora.api import TargetingError
from aurora.registry import Registry


@dataclass(frozen=True)
class VisionLayout:
    """A pre-LN ViT: each layer computes h = x + attention(ln(x)), then h + mlp(mlp_norm(h)); x (B, 1 + N, d)."""

    tower: type[nn.Module]  # the vision model
    layer: type[nn.Module]  # one encoder layer
    embeddings: str  # tower -> patch + [CLS] embeddings, output (B, 1 + N, d)
    encoder: str  # tower -> the layer stack; its output's last_hidden_state is (B, 1 + N, d)
    layers: str  # tower -> its layers, in depth order
    attention: str  # layer -> attention sub-layer; returns (output, attention probabilities)
    qkv: str | None  # layer -> fused Linear d -> 3d, outputs in q, k, v order; None where q, k, v are separate
    attention_out: str  # layer -> attention output projection d -> d
    mlp: str  # layer -> MLP sub-layer
    mlp_in: str  # layer -> MLP Linear d -> c*d
    mlp_out: str  # layer -> MLP Linear c*d -> d
    mlp_norm: str  # layer -> the LayerNorm before the MLP; its input is the post-attention residual stream


@dataclass(frozen=True)
class TextLayout:
    """A post-LN BERT: every sub-layer closes with an output block LN(dense(h) + x), x the sub-layer's input.

    Image-grounded layers put a cross-attention sub-layer between self-attention and the FFN. The same BERT
    serves as text encoder and, wrapped with an LM head (``decoder``), as the answer or caption decoder.
    """

    tower: type[nn.Module]  # a BERT
    layer: type[nn.Module]  # one BERT layer
    embeddings: str  # tower -> token + position embeddings, output (B, L, d)
    encoder: str  # tower -> the layer stack; its output's last_hidden_state is (B, L, d)
    layers: str  # tower -> its layers, in depth order
    layer_index: str  # layer -> its depth (int); also the layer's slot in a KV cache
    self_attention: str  # layer -> self-attention sub-layer; returns (output, attention probabilities)
    cross_attention: str | None  # layer -> cross-attention sub-layer, where the layer has one; None: never
    attention_core: str  # sub-layer -> the module holding q, k, v and called with the KV cache
    projections: tuple[str, str, str]  # attention core -> q, k, v Linear layers
    attention_out: str  # sub-layer -> its output block
    ffn_out: str  # layer -> the FFN's output block
    block_dense: str  # output block -> its Linear, applied before the residual sum and the LayerNorm
    decoder: type[nn.Module] | None  # a BERT with an LM head; None where the family has no text decoder
    decoder_body: str  # decoder -> its BERT


@dataclass(frozen=True)
class Heads:
    """Names (from the task model) of the task heads on the towers."""

    vision_projection: str  # image [CLS] state (B, d) -> ITC embedding (B, e)
    text_projection: str  # text [CLS] state (B, d) -> ITC embedding (B, e)
    itm: str  # image-grounded text [CLS] state (P, d) -> (P, 2) logits (no match, match)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.vision_projection, self.text_projection, self.itm)


class Tower(NamedTuple):
    """A tower of a model: ``kind`` is "vision", "text" (a text encoder) or "decoder" (the BERT of a decoder)."""

    kind: str
    module: nn.Module


@dataclass(frozen=True)
class Architecture:
    """Everything methods and tasks find in the models of one family (``model_types``: the config's
    ``model_type`` of its full models and of its bare towers)."""

    model_types: tuple[str, ...]
    vision: VisionLayout
    text: TextLayout
    heads: Heads
    peft_targets: str  # regex (peft full-matches it) over module names: the peft baselines' default targets

    @property
    def name(self) -> str:
        return self.model_types[0]

    # Towers and layers, always in module order (``model.modules()``'s): methods that draw random numbers per
    # site depend on it.

    def towers(self, model: nn.Module) -> list[Tower]:
        bodies = {id(d.get_submodule(self.text.decoder_body)) for d in self._decoders(model)}
        found = []
        for module in _outermost(model, (self.vision.tower, self.text.tower)):
            if isinstance(module, self.vision.tower):
                found.append(Tower("vision", module))
            else:
                found.append(Tower("decoder" if id(module) in bodies else "text", module))
        return found

    def layout_of(self, tower: nn.Module) -> VisionLayout | TextLayout:
        return self.vision if isinstance(tower, self.vision.tower) else self.text

    def layers_of(self, tower: nn.Module) -> list[nn.Module]:
        layout = self.layout_of(tower)
        layers = list(tower.get_submodule(layout.layers))
        if not all(isinstance(layer, layout.layer) for layer in layers):
            raise TargetingError(f"architecture {self.name!r}: {type(tower).__name__}.{layout.layers} does not hold "
                                 f"{layout.layer.__name__} layers (a transformers version this map does not know?)")
        return layers

    def width_of(self, tower: nn.Module) -> int:
        """d, the width of a tower's residual stream."""
        return tower.config.hidden_size

    def hidden_size(self, model: nn.Module) -> int:
        """d shared by every tower: methods that share tensors across towers need one width."""
        widths = sorted({self.width_of(t.module) for t in self.towers(model)})
        if not widths:
            raise TargetingError(f"this {type(model).__name__} ({self.name!r}) has no vision or text tower")
        if len(widths) > 1:
            raise TargetingError(f"the towers of this {type(model).__name__} ({self.name!r}) have widths {widths}; "
                                 "a method sharing tensors across towers needs one width")
        return widths[0]

    def vit_layers(self, model: nn.Module) -> list[nn.Module]:
        return [layer for t in self.towers(model) if t.kind == "vision" for layer in self.layers_of(t.module)]

    def text_layers(self, model: nn.Module, decoder: bool | None = None) -> list[nn.Module]:
        """BERT layers: every one (None), the decoder's only (True) or the text encoders' only (False)."""
        return [layer for t in self.towers(model)
                if t.kind != "vision" and (decoder is None or (t.kind == "decoder") == decoder)
                for layer in self.layers_of(t.module)]

    # The parts of one BERT layer.

    def layer_index(self, layer: nn.Module) -> int:
        return getattr(layer, self.text.layer_index)

    def self_attention(self, layer: nn.Module) -> nn.Module:
        return layer.get_submodule(self.text.self_attention)

    def cross_attention(self, layer: nn.Module) -> nn.Module | None:
        """The layer's cross-attention sub-layer; None in a layer (or a family) without one."""
        if self.text.cross_attention is None:
            return None
        return _find(layer, self.text.cross_attention)

    def has_cross_attention(self, layer: nn.Module) -> bool:
        return self.cross_attention(layer) is not None

    def attention_sublayers(self, layer: nn.Module) -> list[tuple[str, nn.Module]]:
        """("self", sub-layer) and, where the layer has one, ("cross", sub-layer), in forward order."""
        cross = self.cross_attention(layer)
        return [("self", self.self_attention(layer))] + ([("cross", cross)] if cross is not None else [])

    def attention_core(self, sublayer: nn.Module) -> nn.Module:
        return sublayer.get_submodule(self.text.attention_core)

    def text_output_blocks(self, layer: nn.Module) -> list[str]:
        """Paths (from the layer) of its output blocks LN(dense(h) + x), in forward order."""
        text = self.text
        attention = [text.self_attention] + ([text.cross_attention] if self.has_cross_attention(layer) else [])
        return [f"{sub}.{text.attention_out}" for sub in attention] + [text.ffn_out]

    # What tasks read.

    def vision_tower(self, model: nn.Module) -> nn.Module:
        return self._one(model, "vision", "vision tower")

    def text_encoder(self, model: nn.Module) -> nn.Module:
        return self._one(model, "text", "text encoder")

    def text_decoder(self, model: nn.Module) -> nn.Module:
        """The decoder with its LM head: ``(input_ids, encoder_hidden_states, ...) -> .logits (B, L, vocab)``."""
        decoders = self._decoders(model)
        if not decoders:
            raise TargetingError(f"this {type(model).__name__} ({self.name!r}) has no text decoder")
        return decoders[0]

    def head(self, model: nn.Module, role: str) -> nn.Module:
        """A task head by its role, a field of ``Heads``: "vision_projection", "text_projection" or "itm"."""
        name = getattr(self.heads, role)
        found = _find(model, name)
        if found is None:
            raise TargetingError(f"this {type(model).__name__} ({self.name!r}) has no {role} head {name!r}")
        return found

    def _one(self, model: nn.Module, kind: str, what: str) -> nn.Module:
        for tower in self.towers(model):
            if tower.kind == kind:
                return tower.module
        raise TargetingError(f"this {type(model).__name__} ({self.name!r}) has no {what}")

    def _decoders(self, model: nn.Module) -> list[nn.Module]:
        return _outermost(model, (self.text.decoder,)) if self.text.decoder is not None else []


def _outermost(root: nn.Module, classes: tuple[type, ...]) -> list[nn.Module]:
    """Modules of ``classes`` in module order, without looking inside one found (towers do not nest): a walk
    over a few modules, cheap enough for the tasks' accessors on every forward pass."""
    found, seen = [], set()

    def visit(module: nn.Module) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        if isinstance(module, classes):
            found.append(module)
            return
        for child in module.children():
            visit(child)

    visit(root)
    return found


def _find(root: nn.Module, path: str) -> nn.Module | None:
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


def locate(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    """(parent, attribute) of the sub-module at ``path``, so a method can put a wrapper in its place."""
    parent, _, attr = path.rpartition(".")
    return (root.get_submodule(parent) if parent else root), attr


def replace_module(root: nn.Module, path: str, wrapper, *args) -> nn.Module:
    """Put ``wrapper(old, *args)`` where the sub-module at ``path`` is; returns the wrapper."""
    parent, attr = locate(root, path)
    new = wrapper(getattr(parent, attr), *args)
    setattr(parent, attr, new)
    return new


ARCHITECTURES: Registry[Architecture] = Registry("architecture")


def register_architecture(arch: Architecture) -> Architecture:
    for model_type in arch.model_types:
        ARCHITECTURES.register(model_type, arch)
    return arch


def architecture_of(model: nn.Module) -> Architecture:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise TargetingError(f"no architecture map for model_type {model_type!r} (a {type(model).__name__}); "
                             f"known model types: {', '.join(ARCHITECTURES.names())}")
    return ARCHITECTURES.get(model_type)


# The accessors tasks use, one call each.

def vision_tower(model: nn.Module) -> nn.Module:
    """``(pixel_values (B, 3, S, S)) -> .last_hidden_state (B, 1 + N, d)``."""
    return architecture_of(model).vision_tower(model)


def text_encoder(model: nn.Module) -> nn.Module:
    """``(input_ids, attention_mask[, encoder_hidden_states, encoder_attention_mask]) -> .last_hidden_state``."""
    return architecture_of(model).text_encoder(model)


def text_decoder(model: nn.Module) -> nn.Module:
    return architecture_of(model).text_decoder(model)


def vision_projection(model: nn.Module) -> nn.Module:
    return architecture_of(model).head(model, "vision_projection")


def text_projection(model: nn.Module) -> nn.Module:
    return architecture_of(model).head(model, "text_projection")


def itm_head(model: nn.Module) -> nn.Module:
    return architecture_of(model).head(model, "itm")


def head_names(model: nn.Module) -> tuple[str, ...]:
    """Module names of the retrieval heads (ITC projections, ITM), for ``train_heads``."""
    return architecture_of(model).heads.names


# transformers' BLIP: retrieval, VQA, captioning and BlipModel share model_type "blip"; the bare towers have
# their own. The text layers of the image-grounded encoder and of the decoder have cross-attention.
_BLIP_TEXT_LAYERS = r"(text_encoder|text_decoder\.bert)\.encoder\.layer\.\d+"
BLIP = register_architecture(Architecture(
    model_types=("blip", "blip_vision_model", "blip_text_model"),
    vision=VisionLayout(
        tower=BlipVisionModel, layer=BlipEncoderLayer, embeddings="embeddings", encoder="encoder",
        layers="encoder.layers", attention="self_attn", qkv="self_attn.qkv", attention_out="self_attn.projection",
        mlp="mlp", mlp_in="mlp.fc1", mlp_out="mlp.fc2", mlp_norm="layer_norm2",
    ),
    text=TextLayout(
        tower=BlipTextModel, layer=BlipTextLayer, embeddings="embeddings", encoder="encoder",
        layers="encoder.layer", layer_index="layer_num", self_attention="attention",
        cross_attention="crossattention", attention_core="self", projections=("query", "key", "value"),
        attention_out="output", ffn_out="output", block_dense="dense",
        decoder=BlipTextLMHeadModel, decoder_body="bert",
    ),
    heads=Heads(vision_projection="vision_proj", text_projection="text_proj", itm="itm_head"),
    # the fused ViT qkv, and q/k/v of the text self- and cross-attention in the text encoder and the decoder
    peft_targets=rf".*(vision_model\.encoder\.layers\.\d+\.self_attn\.qkv|"
                 rf"{_BLIP_TEXT_LAYERS}\.(attention|crossattention)\.self\.(query|key|value))",
))
