"""LoRA through peft, on both towers and the cross-attention of BLIP."""

from dataclasses import dataclass, field

from peft import LoraConfig
from torch import nn

from aurora.api import Method, MethodConfig, register_method
from baselines._peft import ATTENTION_TARGETS, check_rank_and_dropout, inject


@dataclass
class LoraMethodConfig(MethodConfig):
    r: int = field(default=4, metadata={"help": "rank of each update"})
    alpha: float = field(default=8.0, metadata={"help": "scale: the update is multiplied by alpha / r"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    target_modules: str = field(default=ATTENTION_TARGETS, metadata={"help": "regex over module names"})

    def __post_init__(self):
        check_rank_and_dropout(self.r, self.dropout)


@register_method
class Lora(Method):
    name = "lora"
    config_cls = LoraMethodConfig
    description = "LoRA (peft) on ViT qkv and text self/cross-attention q, k, v"

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        peft_config = LoraConfig(
            r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.target_modules,
            task_type=None, bias="none",
        )
        inject(self.name, peft_config, model)
        return model
