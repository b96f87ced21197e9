"""Linear probe: the backbone stays frozen and only the benchmark's heads train."""

from dataclasses import dataclass

from torch import nn

from aurora.api import Method, MethodConfig, TargetingError, freeze, register_method
from aurora.arch import architecture_of


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
        # The heads belong to the benchmark, so the only thing to target is a backbone to keep frozen.
        arch = architecture_of(model)
        if not arch.towers(model):
            raise TargetingError(f"heads_only found no vision or text tower to freeze in this {arch.name!r} model")
        freeze(model)
        return model
