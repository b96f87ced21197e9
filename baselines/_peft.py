"""What the peft-backed baselines share: ``PeftMethod`` and injection into the bare model.

peft's tuners are used without the ``PeftModel`` wrapper, so the model keeps its own ``forward`` and the
harness's losses. This module registers no method; the registry imports it like the method packages.
"""

from __future__ import annotations

import warnings
from dataclasses import field

from peft import PeftConfig
from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from torch import nn

from aurora.api import Method, TargetingError, freeze
from aurora.arch import architecture_of


def target_modules_field():
    """The ``target_modules`` option of every peft baseline: empty resolves, at ``apply``, to the attention
    projections the model's architecture map names (in BLIP: the fused ViT q/k/v and q, k, v of the text
    self- and cross-attention, answer decoder included)."""
    return field(default="", metadata={
        "help": "regex over module names (peft full-matches it); empty: the architecture's attention projections"})


class PeftMethod(Method):
    """A peft tuner added in place. Subclasses set ``name``, ``config_cls`` (whose ``target_modules`` comes from
    ``target_modules_field``) and ``description``, and build peft's config in ``peft_config``."""

    def peft_config(self, target_modules: str) -> PeftConfig:
        raise NotImplementedError

    def apply(self, model: nn.Module) -> nn.Module:
        self.build_tuner(model)
        return model

    def merge(self, model: nn.Module):
        """peft's own merge: every tuner layer adds its update into the base weight. Restoring copies the
        saved weights back, since peft's unmerge (subtracting again) is not exact in floating point."""
        layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
        saved = [[p.detach().clone() for p in layer.get_base_layer().parameters()] for layer in layers]
        for layer in layers:
            layer.merge()

        def restore() -> None:
            with warnings.catch_warnings():  # peft warns that its own unmerge is inexact: the copy below is not
                warnings.filterwarnings("ignore", message="Unmerge result can be inaccurate")
                for layer in layers:
                    layer.unmerge()
            for layer, originals in zip(layers, saved):
                for p, original in zip(layer.get_base_layer().parameters(), originals):
                    p.copy_(original)

        return restore

    def build_tuner(self, model: nn.Module) -> BaseTuner:
        targets = self.config.target_modules or architecture_of(model).peft_targets
        return inject(self.name, self.peft_config(targets), model)


def inject(method: str, peft_config: PeftConfig, model: nn.Module) -> BaseTuner:
    """Freeze ``model``, add peft's layers in place and train exactly the tuner's own parameters.

    Builds the tuner directly rather than through ``inject_adapter_in_model``, which refuses tuners with
    shared state (VeRA); the shared tensors live on the injected layers, so the tuner object is only needed
    by methods with a schedule (AdaLoRA keeps it). Returns the tuner; ``tuner.model is model``.
    """
    freeze(model)
    tuner_cls = PEFT_TYPE_TO_TUNER_MAPPING[peft_config.peft_type]
    try:
        tuner = tuner_cls(model, peft_config, adapter_name="default")
    except ValueError as err:  # peft: "Target modules ... not found in the base model"
        raise TargetingError(f"{method}: {err}") from None
    trainable = [p for name, p in model.named_parameters() if tuner_cls.prefix in name]
    if not trainable:
        raise TargetingError(f"{method}: target_modules {peft_config.target_modules!r} matched no layer")
    for name, p in model.named_parameters():
        p.requires_grad_(tuner_cls.prefix in name)
    return tuner


def check_rank_and_dropout(r: int, dropout: float, rank_name: str = "r") -> None:
    if r < 1:
        raise ValueError(f"{rank_name} must be a positive integer, got {r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
