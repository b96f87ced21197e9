"""LoRA through peft, on the attention of both towers, cross-attention included."""

from dataclasses import dataclass, field

from peft import LoraConfig

from aurora.api import MethodConfig, register_method
from baselines._peft import PeftMethod, check_rank_and_dropout, target_modules_field


@dataclass
class LoraMethodConfig(MethodConfig):
    r: int = field(default=4, metadata={"help": "rank of each update"})
    alpha: float = field(default=8.0, metadata={"help": "scale: the update is multiplied by alpha / r"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    target_modules: str = target_modules_field()

    def __post_init__(self):
        check_rank_and_dropout(self.r, self.dropout)


@register_method
class Lora(PeftMethod):
    name = "lora"
    config_cls = LoraMethodConfig
    description = "LoRA (peft) on ViT qkv and text self/cross-attention q, k, v"

    def peft_config(self, target_modules: str) -> LoraConfig:
        cfg = self.config
        return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=target_modules,
                          task_type=None, bias="none")
