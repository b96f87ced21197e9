"""(IA)^3 through peft (Liu et al., NeurIPS 2022, arXiv 2205.05638): learned vectors rescale activations."""

from dataclasses import dataclass, field

from peft import IA3Config

from aurora.api import MethodConfig, register_method
from baselines._peft import PeftMethod, target_modules_field


@dataclass
class IA3MethodConfig(MethodConfig):
    target_modules: str = target_modules_field()
    feedforward_modules: str = field(
        default="", metadata={"help": "regex of targeted feed-forward layers, whose input (not output) is rescaled"}
    )


@register_method
class IA3(PeftMethod):
    """One vector per targeted Linear, initialised to ones (so identity at init), scaling its output."""

    name = "ia3"
    config_cls = IA3MethodConfig
    description = "(IA)^3 (peft): learned scaling vectors on ViT qkv and text self/cross-attention q, k, v"

    def peft_config(self, target_modules: str) -> IA3Config:
        # peft requires feedforward_modules to be a subset of the targets; [] means none of them is one.
        return IA3Config(target_modules=target_modules, feedforward_modules=self.config.feedforward_modules or [],
                         task_type=None)
