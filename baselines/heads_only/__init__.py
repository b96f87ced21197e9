"""Linear probe: the backbone stays frozen and only the benchmark's heads train."""

from dataclasses import dataclass

from torch import nn
from transformers.models.blip.modeling_blip import BlipVisionModel
from transformers.models.blip.modeling_blip_text import BlipTextModel

from aurora.api import Method, MethodConfig, TargetingError, freeze, register_method


@dataclass
class HeadsOnlyConfig(MethodConfig):
    pass


@register_method
class HeadsOnly(Method):
    """The linear-probe row: ``apply`` freezes everything; the harness's ``train_heads`` unfreezes the heads.

    On a task whose benchmark declares no heads (VQA) nothing trains, which is the honest result.
    """

    name = "heads_only"
    config_cls = HeadsOnlyConfig
    description = "linear probe: frozen backbone, only the benchmark's heads train"

    def apply(self, model: nn.Module) -> nn.Module:
        # The heads belong to the benchmark, so the only thing to target is a BLIP backbone to keep frozen.
        if not any(isinstance(m, (BlipVisionModel, BlipTextModel)) for m in model.modules()):
            raise TargetingError("heads_only found no BLIP vision or text model to freeze")
        freeze(model)
        return model
