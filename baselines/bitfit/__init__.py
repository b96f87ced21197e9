"""BitFit (Ben Zaken et al., ACL 2022, arXiv 2106.10199): only the bias terms of both towers train."""

from dataclasses import dataclass

from torch import nn
from transformers.models.blip.modeling_blip import BlipVisionModel
from transformers.models.blip.modeling_blip_text import BlipTextModel

from aurora.api import Method, MethodConfig, TargetingError, freeze, register_method


@dataclass
class BitFitConfig(MethodConfig):
    pass


@register_method
class BitFit(Method):
    """Every bias of the ViT and of the BERT towers (encoder and, for VQA, decoder), LayerNorm biases included."""

    name = "bitfit"
    config_cls = BitFitConfig
    description = "BitFit: only the bias terms of both towers train"
    tunes_backbone = True

    def apply(self, model: nn.Module) -> nn.Module:
        freeze(model)
        towers = [m for m in model.modules() if isinstance(m, (BlipVisionModel, BlipTextModel))]
        biases = [p for tower in towers for name, p in tower.named_parameters() if name.endswith("bias")]
        if not biases:
            raise TargetingError("bitfit found no bias in a BLIP vision or text model")
        for p in biases:
            p.requires_grad_(True)
        return model
