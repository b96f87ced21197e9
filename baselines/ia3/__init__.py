"""(IA)^3 through peft (Liu et al., NeurIPS 2022, arXiv 2205.05638): learned vectors rescale activations."""

from dataclasses import dataclass, field

from peft import IA3Config
from torch import nn

from aurora.api import Method, MethodConfig, register_method
from baselines._peft import ATTENTION_TARGETS, inject


@dataclass
class IA3MethodConfig(MethodConfig):
    target_modules: str = field(default=ATTENTION_TARGETS, metadata={"help": "regex over module names"})
    feedforward_modules: str = field(
        default="", metadata={"help": "regex of targeted feed-forward layers, whose input (not output) is rescaled"}
    )


@register_method
class IA3(Method):
    """One vector per targeted Linear, initialised to ones (so identity at init), scaling its output."""

    name = "ia3"
    config_cls = IA3MethodConfig
    description = "(IA)^3 (peft): learned scaling vectors on ViT qkv and text self/cross-attention q, k, v"

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        # peft requires feedforward_modules to be a subset of the targets; [] means none of them is one.
        peft_config = IA3Config(target_modules=cfg.target_modules,
                                feedforward_modules=cfg.feedforward_modules or [], task_type=None)
        inject(self.name, peft_config, model)
        return model
