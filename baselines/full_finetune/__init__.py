"""Full fine-tuning: every backbone parameter trains."""

from dataclasses import dataclass

from torch import nn

from aurora.api import Method, MethodConfig, TargetingError, register_method


@dataclass
class FullFinetuneConfig(MethodConfig):
    pass


@register_method
class FullFinetune(Method):
    name = "full_finetune"
    config_cls = FullFinetuneConfig
    description = "full fine-tuning: every parameter trains"
    tunes_backbone = True

    def apply(self, model: nn.Module) -> nn.Module:
        params = list(model.parameters())
        if not params:
            raise TargetingError("full_finetune: the model has no parameters")
        for p in params:
            p.requires_grad_(True)
        return model
