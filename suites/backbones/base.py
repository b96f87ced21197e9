"""The backbone a benchmark feeds: the transformers model plus its tokenizer, image preprocessing, [ENC] id and ITC
temperature; and the registry of backbone builders (``build_backbone``).

Methods only ever see ``backbone.model``. Builders live in this package's modules (``blip``) and in packages
that join ``BACKBONES`` through the "aurora_bench.backbones" entry points (the synthetic proxy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from aurora.registry import Registry

BACKBONES: Registry[Callable] = Registry("backbone", discover=("suites.backbones",),
                                         entry_point_group="aurora_bench.backbones")
# The builder of any name that is not registered: a hub id or a local checkpoint folder.
CHECKPOINT_BUILDER = "hf"


class BackboneUnavailable(RuntimeError):
    """A checkpoint that cannot be loaded here: a missing path or file (config, weights, processor files), a hub
    id while offline, or weights for another task than the one asked for."""


@dataclass
class Backbone:
    model: nn.Module  # a transformers BLIP model (retrieval or VQA)
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


def build_backbone(name: str, **options) -> Backbone:
    """A registered backbone (``aurora-bench list backbones``), or a hub id / local path (anything else)."""
    if name in BACKBONES:
        return BACKBONES.get(name)(**options)
    return BACKBONES.get(CHECKPOINT_BUILDER)(name, **options)
