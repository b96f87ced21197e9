"""BitFit (Ben Zaken et al., ACL 2022, arXiv 2106.10199): only the bias terms of both towers train."""

from dataclasses import dataclass

from torch import nn

from aurora.api import Method, MethodConfig, TargetingError, freeze, register_method
from aurora.arch import architecture_of


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
        arch = architecture_of(model)
        freeze(model)
        towers = arch.towers(model)  # the decoder's BERT included, not its LM head
        biases = [p for tower in towers for name, p in tower.module.named_parameters() if name.endswith("bias")]
        if not biases:
            raise TargetingError(f"bitfit found no bias in the vision or text towers of this {arch.name!r} model")
        for p in biases:
            p.requires_grad_(True)
        return model
