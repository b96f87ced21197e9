"""The image size a real benchmark feeds its backbone: a setting of the benchmark, whatever the checkpoint's.

Aurora's recipes train video at 224 px and images at 384 px, from checkpoints made at 224 (``model_base.pth``),
384 (transformers' releases) or 480 px (``model_vqa.pth``). ``image_size`` resizes images and frames to it
(``Backbone.pixels`` and the training transform read the backbone's ``image_size``); the ViT then interpolates
its position embeddings to the new patch grid on every pass (``suites.tasks.passes.frame_tokens``), bicubic
like BLIP's loader, which interpolates once at load time. For a method that leaves the position embeddings
frozen (every parameter-efficient method here) the two give the same embeddings; full fine-tuning trains the
checkpoint's grid through the interpolation instead of a resized copy. Registers no benchmark.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class ImageSizeOption:
    """Mixed in before a ``Benchmark`` class: its objective, validation and evaluation see the backbone at the
    benchmark's ``image_size``."""

    image_size: int = 0  # pixels per side fed to the ViT; 0: the backbone's own

    def __post_init__(self):
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"image_size must be a whole number of pixels (0: the backbone's own), got {size!r}")
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    def sized(self, backbone):
        """``backbone`` feeding ``image_size`` pixels (the same model and tokenizer), or itself."""
        if not self.image_size or self.image_size == backbone.image_size:
            return backbone
        return dataclasses.replace(backbone, image_size=self.image_size)

    def objective(self, backbone):
        return super().objective(self.sized(backbone))

    def validate(self, model, backbone, data) -> dict:
        return super().validate(model, self.sized(backbone), data)

    def evaluate(self, model, backbone, data) -> dict:
        return super().evaluate(model, self.sized(backbone), data)
