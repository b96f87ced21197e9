"""BLIP backbones from transformers: tiny (tests), the BLIP-base shape, and real checkpoints.

Every builder returns a ``Backbone`` whose model has its parameters tagged as backbone weights. Every BLIP
model built here (``from_config``, ``from_pretrained``) goes through ``fix_cross_attention_mask``, which
makes the text cross-attention honour ``encoder_attention_mask`` where the installed transformers ignores it.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
import zlib
from pathlib import Path

import torch
from torch import nn
from transformers import BlipConfig, BlipForImageTextRetrieval, BlipForQuestionAnswering

from aurora.api import mark_backbone
from aurora.arch import architecture_of
from aurora.registry import UnknownNameError
from suites.backbones.base import BACKBONES, Backbone, BackboneUnavailable


def blip_config(
    hidden: int = 128,
    layers: int = 3,
    heads: int = 4,
    mlp: int = 512,
    image_size: int = 48,
    patch: int = 16,
    vocab_size: int = 128,
    proj: int = 64,
    dropout: float = 0.0,
    init_std: float = 0.02,
) -> BlipConfig:
    """A small BLIP config. ``is_decoder=True`` keeps cross-attention in every text layer (ITM needs it)."""
    vision = dict(
        hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers, num_attention_heads=heads,
        image_size=image_size, patch_size=patch,
        initializer_range=init_std,  # the vision default (1e-10) leaves position/CLS embeddings at ~0
    )
    text = dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
        num_attention_heads=heads, encoder_hidden_size=hidden, is_decoder=True,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, pad_token_id=0,
        max_position_embeddings=64, initializer_range=init_std, bos_token_id=None, sep_token_id=None,
    )
    return BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=proj, initializer_range=init_std)


# The transformers model class of each task; VQA adds an answer decoder beside the text encoder.
MODEL_CLASSES = {"retrieval": BlipForImageTextRetrieval, "vqa": BlipForQuestionAnswering}


def model_class(task: str) -> type:
    if task not in MODEL_CLASSES:
        raise UnknownNameError(f"unknown task {task!r}; valid tasks: {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[task]


def blip_base_config(task: str = "retrieval", image_size: int = 384) -> BlipConfig:
    """BLIP-base (ViT-B/16 + BERT-base MED) as BLIP builds it. ``BlipConfig()`` is not quite it: its text
    encoder has 8 attention heads (BLIP: 12) and its ViT LayerNorms eps 1e-5 (BLIP's ViT: 1e-6).

    Both tasks share the architecture. Image size: 384 for both, as transformers' released checkpoints
    (Salesforce/blip-itm-base-coco, blip-vqa-base) have it; BLIP fine-tuned its VQA model at 480 px
    (configs/vqa.yaml), and transformers' conversion resized its position embeddings to 384: an original VQA
    checkpoint is read with ``image_size=480`` (+248,832 position-embedding weights).
    """
    model_class(task)  # an unknown task fails here
    text = dict(
        vocab_size=30524,  # bert-base-uncased's 30522 + [DEC] + [ENC]
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12,  # BlipTextConfig's default is 8
        layer_norm_eps=1e-12, max_position_embeddings=512,
        encoder_hidden_size=768, is_decoder=True,  # cross-attention in every layer
        bos_token_id=30522, pad_token_id=0, sep_token_id=102,  # [DEC], [PAD], [SEP]
    )
    vision = dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        image_size=image_size, patch_size=16,
        layer_norm_eps=1e-6,  # BlipVisionConfig's default is 1e-5
    )
    return BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=256, projection_dim=512)


def from_config(config: BlipConfig, seed: int = 0, task: str = "retrieval") -> torch.nn.Module:
    cls = model_class(task)
    torch.manual_seed(seed)
    return fix_cross_attention_mask(mark_backbone(cls(config).eval()))


def from_pretrained(source: str | Path, model_cls: type) -> torch.nn.Module:
    """A BLIP model of ``model_cls`` loaded from ``source`` (a hub id or a ``save_pretrained`` folder), in
    eval mode, with its cross-attention mask fixed where transformers needs it."""
    return fix_cross_attention_mask(model_cls.from_pretrained(source).eval())


# ---------------------------------------------------------------- the cross-attention mask
#
# transformers' BlipTextLayer hands the (additive, extended) encoder mask to its cross-attention as
# ``attention_mask``; BlipTextAttention passes it on as ``attention_mask``; BlipTextSelfAttention, when
# cross-attending, replaces ``attention_mask`` by its own ``encoder_attention_mask`` argument, which nobody
# passes: every cross-attention reads padded encoder positions. Retrieval never pads its image tokens; VQA's
# answer decoder cross-attends to padded question states. The fix is a forward pre-hook on each
# cross-attention core that passes the mask it was given on as ``encoder_attention_mask``, so the core
# applies exactly the mask BlipTextModel built for it, in the convention it already adds to its scores.


def _pass_encoder_mask(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if kwargs.get("encoder_hidden_states") is not None and kwargs.get("encoder_attention_mask") is None:
        kwargs["encoder_attention_mask"] = kwargs.get("attention_mask")
    return args, kwargs


def _hook_cross_attention(model: nn.Module) -> nn.Module:
    arch = architecture_of(model)
    for layer in arch.text_layers(model):
        cross = arch.cross_attention(layer)
        if cross is None:
            continue
        core = arch.attention_core(cross)
        if not getattr(core, "_passes_encoder_mask", False):
            core.register_forward_pre_hook(_pass_encoder_mask, with_kwargs=True)
            core._passes_encoder_mask = True
    return model


def _mask_leak(model: nn.Module) -> float:
    """Largest change of a text model's output when its encoder states gain positions the mask excludes
    (0 where the cross-attention honours the mask)."""
    d = model.config.encoder_hidden_size
    ids = torch.tensor([[1, 5, 6, 7]])
    states = torch.randn(1, 3, d)
    padded = torch.cat([states, 10 * torch.randn(1, 2, d)], dim=1)  # loud extra positions, masked out below
    out = model(input_ids=ids, encoder_hidden_states=states, encoder_attention_mask=torch.ones(1, 3)).last_hidden_state
    out_padded = model(input_ids=ids, encoder_hidden_states=padded,
                       encoder_attention_mask=torch.tensor([[1, 1, 1, 0, 0]])).last_hidden_state
    return float((out - out_padded).abs().max())


@functools.cache
def cross_attention_ignores_mask() -> bool:
    """Whether the installed transformers' BLIP text cross-attention ignores ``encoder_attention_mask``,
    found by behaviour once per process (a tiny random BLIP text model, CPU, the global RNG untouched)."""
    from transformers import BlipTextConfig
    from transformers.models.blip.modeling_blip_text import BlipTextModel

    with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch.no_grad():
        torch.manual_seed(0)
        config = BlipTextConfig(vocab_size=16, hidden_size=16, encoder_hidden_size=16, intermediate_size=32,
                                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=8,
                                is_decoder=True, bos_token_id=None, sep_token_id=None)
        model = BlipTextModel(config, add_pooling_layer=False).float().eval()
        if _mask_leak(model) <= 1e-5:
            return False
        leak = _mask_leak(_hook_cross_attention(model))
    if leak > 1e-5:
        warnings.warn(f"this transformers' BLIP cross-attention ignores encoder_attention_mask and the suite's "
                      f"fix does not repair it (output still moves by {leak:.2g}); padded encoder positions "
                      "are attended (VQA answers read padded question states)", RuntimeWarning, stacklevel=2)
        return False
    return True


def fix_cross_attention_mask(model: nn.Module) -> nn.Module:
    """Make ``model``'s BLIP text cross-attention honour ``encoder_attention_mask`` (in place; idempotent),
    only while the installed transformers needs it (``cross_attention_ignores_mask``)."""
    return _hook_cross_attention(model) if cross_attention_ignores_mask() else model


# Written beside the weights by ``suites.backbones.convert`` (``aurora-bench convert-blip``): what transformers'
# BLIP has no place for, above all the learned ITC temperature (``{"itc_temperature": ...}``).
CONVERSION_INFO = "aurora_bench.json"


def itc_temperature(folder: str | Path) -> float | None:
    """The ITC temperature a converted checkpoint folder carries in ``CONVERSION_INFO``, or None."""
    path = Path(folder) / CONVERSION_INFO
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("itc_temperature")
        return None if value is None else float(value)
    except (ValueError, TypeError, AttributeError) as err:
        raise BackboneUnavailable(f"{path}: no readable itc_temperature ({type(err).__name__}: {err})") from None


class _IdTokenizer:
    """Tokenizer stand-in for random-weight backbones: hashes words into the vocabulary."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def __call__(self, texts: list[str], max_length: int = 35) -> dict[str, torch.Tensor]:
        rows = [[1] + [4 + zlib.crc32(w.encode()) % (self.vocab_size - 4) for w in t.split()][: max_length - 2] + [2] for t in texts]
        length = max(map(len, rows))
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}


@BACKBONES.register("test-tiny")
def tiny(seed: int = 0, task: str = "retrieval", **overrides) -> Backbone:
    """A random-weight BLIP small enough for unit tests (hidden 32, 2 layers, 32 px)."""
    cfg = dict(hidden=32, layers=2, heads=2, mlp=64, image_size=32, patch=16, vocab_size=64, proj=16)
    cfg.update(overrides)
    model = from_config(blip_config(**cfg), seed, task)
    return Backbone(model, _IdTokenizer(cfg["vocab_size"]), enc_token_id=3, image_size=cfg["image_size"],
                    source="test-tiny (random init)")


@BACKBONES.register("blip-base")
def blip_base(seed: int = 0, task: str = "retrieval") -> Backbone:
    """The BLIP-base architecture (``blip_base_config``) with random weights: for parameter accounting offline."""
    model = from_config(blip_base_config(task), seed, task)
    return Backbone(model, _IdTokenizer(model.config.text_config.vocab_size), enc_token_id=30523,
                    image_size=model.config.vision_config.image_size, source="blip-base architecture (random init)")


@BACKBONES.register("hf")
def pretrained(name_or_path: str = "Salesforce/blip-itm-base-coco", seed: int = 0, task: str = "retrieval") -> Backbone:
    """A real BLIP retrieval checkpoint: a local ``save_pretrained`` directory or a hub id already cached."""
    from transformers import AutoProcessor

    local = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith((".", "/", "~")) or local.exists()
    if looks_local and not (local / "config.json").is_file():
        raise BackboneUnavailable(
            f"checkpoint path {local} has no config.json; expected a directory written by save_pretrained "
            "(config.json, model.safetensors and the processor files)"
        )
    try:
        source = str(local) if looks_local else name_or_path
        model = from_pretrained(source, model_class(task))
        processor = AutoProcessor.from_pretrained(source)
    except OSError as err:
        raise BackboneUnavailable(
            f"cannot load {name_or_path!r} from the hub (offline or not cached: {type(err).__name__}); "
            "download it on a connected machine (`hf download "
            f"{name_or_path} --local-dir DIR`) and pass the local directory instead, or use a registered "
            f"backbone: {', '.join(n for n in BACKBONES.names() if n != 'hf')}"
        ) from None
    tok = processor.tokenizer
    temp = itc_temperature(local) if looks_local else None  # converted original checkpoints carry theirs
    enc = tok.convert_tokens_to_ids("[ENC]") if "[ENC]" in tok.get_vocab() else tok.cls_token_id
    size = model.config.vision_config.image_size
    image_processor = processor.image_processor

    def tokenizer(texts, max_length=35):
        out = tok(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    tokenizer.decode = lambda ids: tok.decode(ids, skip_special_tokens=True)  # generated answers -> text

    return Backbone(
        mark_backbone(model), tokenizer, enc_token_id=enc, image_size=size,
        image_mean=tuple(image_processor.image_mean), image_std=tuple(image_processor.image_std),
        source=f"{name_or_path} ({os.path.basename(source)})", **({} if temp is None else {"temp": temp}),
    )
