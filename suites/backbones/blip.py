"""BLIP backbones from transformers: tiny (tests), the BLIP-base shape, and real checkpoints.

Every builder returns a ``Backbone`` whose model has its parameters tagged as backbone weights.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import torch
from transformers import BlipConfig, BlipForImageTextRetrieval, BlipForQuestionAnswering

from aurora.api import mark_backbone
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


def from_config(config: BlipConfig, seed: int = 0, task: str = "retrieval") -> torch.nn.Module:
    cls = model_class(task)
    torch.manual_seed(seed)
    return mark_backbone(cls(config).eval())


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
    """The BLIP-base architecture (``BlipConfig()``) with random weights: for parameter accounting offline."""
    model = from_config(BlipConfig(), seed, task)
    return Backbone(model, _IdTokenizer(model.config.text_config.vocab_size), enc_token_id=30523,
                    image_size=384, source="blip-base architecture (random init)")


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
        model = model_class(task).from_pretrained(source)
        processor = AutoProcessor.from_pretrained(source)
    except OSError as err:
        raise BackboneUnavailable(
            f"cannot load {name_or_path!r} from the hub (offline or not cached: {type(err).__name__}); "
            "download it on a connected machine (`hf download "
            f"{name_or_path} --local-dir DIR`) and pass the local directory instead, or use a registered "
            f"backbone: {', '.join(n for n in BACKBONES.names() if n != 'hf')}"
        ) from None
    tok = processor.tokenizer
    enc = tok.convert_tokens_to_ids("[ENC]") if "[ENC]" in tok.get_vocab() else tok.cls_token_id
    size = model.config.vision_config.image_size
    image_processor = processor.image_processor

    def tokenizer(texts, max_length=35):
        out = tok(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    tokenizer.decode = lambda ids: tok.decode(ids, skip_special_tokens=True)  # generated answers -> text

    return Backbone(
        mark_backbone(model.eval()), tokenizer, enc_token_id=enc, image_size=size,
        image_mean=tuple(image_processor.image_mean), image_std=tuple(image_processor.image_std),
        source=f"{name_or_path} ({os.path.basename(source)})",
    )
