"""BLIP retrieval backbones from transformers: tiny (tests), BLIP-base shape, proxy (pretrained here), real.

Every builder returns a ``Backbone``: the ``BlipForImageTextRetrieval`` module with its parameters tagged as
backbone weights, plus what the benchmarks need to feed it (tokenizer, image preprocessing, ITM token,
ITC temperature). Methods only ever see ``backbone.model``.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import BlipConfig, BlipForImageTextRetrieval, BlipForQuestionAnswering

from aurora.api import mark_backbone
from aurora.registry import BACKBONES


class BackboneUnavailable(RuntimeError):
    """A checkpoint that cannot be loaded here (missing path, or a hub id while offline)."""


@dataclass
class Backbone:
    model: BlipForImageTextRetrieval
    tokenizer: Callable  # tokenizer(texts, max_length=...) -> {"input_ids", "attention_mask"}
    enc_token_id: int  # BLIP replaces the first token by [ENC] for image-grounded (ITM) passes
    image_size: int
    temp: float = 0.07  # ITC temperature the backbone was trained with
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    max_text_length: int = 35
    source: str = ""  # what was loaded, recorded with every result
    info: dict = field(default_factory=dict)

    def pixels(self, images: np.ndarray | Sequence) -> torch.Tensor:
        """uint8 (N, H, W, 3) arrays or PIL images -> normalised (N, 3, S, S) float tensor;
        uint8 clips, (N, T, H, W, 3) or a list of (T, H, W, 3) -> (N, T, 3, S, S)."""
        if isinstance(images, np.ndarray) and images.ndim == 5:
            n, t = images.shape[:2]
            frames = self.pixels(images.reshape(n * t, *images.shape[2:]))  # (N*T, 3, S, S)
            return frames.view(n, t, *frames.shape[1:])
        if not isinstance(images, np.ndarray) and len(images) and getattr(images[0], "ndim", 0) == 4:
            return torch.stack([self.pixels(clip) for clip in images])  # real videos differ in frame size
        if not isinstance(images, np.ndarray):
            images = np.stack([_resize(im, self.image_size) for im in images])
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
        if x.shape[-2:] != (self.image_size, self.image_size):  # video frames are rarely square
            x = torch.nn.functional.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False)
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        return (x - mean) / std

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), max_length=self.max_text_length)


def _resize(image, size: int) -> np.ndarray:
    from PIL import Image  # bicubic square resize, as BLIP's test transform

    return np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC))


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
        from aurora.registry import UnknownNameError

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


@BACKBONES.register("proxy")
def proxy(seed: int = 0, cache_dir: str | None = None, task: str = "retrieval") -> Backbone:
    """The tiny proxy-tier BLIP, pretrained by the suite on synthetic scenes (cached on disk); for VQA,
    grown from it with an answer decoder pretrained on synthetic questions."""
    if model_class(task) is BlipForQuestionAnswering:
        from suites.proxy.pretrain_vqa import load_or_pretrain_vqa

        return load_or_pretrain_vqa(seed=seed, cache_dir=cache_dir)
    from suites.proxy.pretrain import load_or_pretrain

    return load_or_pretrain(seed=seed, cache_dir=cache_dir)


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


def build_backbone(name: str, **options) -> Backbone:
    """``proxy``, ``test-tiny``, ``blip-base``, or a hub id / local path (anything else)."""
    if name in BACKBONES:
        return BACKBONES.get(name)(**options)
    return pretrained(name, **options)
