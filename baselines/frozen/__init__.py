"""Zero-shot: the pretrained backbone evaluated as it is; nothing trains, not even the heads."""

from dataclasses import dataclass

from torch import nn

from aurora.api import Method, MethodConfig, freeze, register_method


@dataclass
class FrozenConfig(MethodConfig):
    pass


@register_method
class Frozen(Method):
    name = "frozen"
    config_cls = FrozenConfig
    description = "zero-shot: the pretrained backbone, no training"
    trains = False

    def apply(self, model: nn.Module) -> nn.Module:
        freeze(model)
        return model
