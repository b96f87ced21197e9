"""LoRA through peft, on both towers and the cross-attention of BLIP."""

from dataclasses import dataclass, field

from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from aurora.api import Method, MethodConfig, TargetingError, freeze, register_method

# Regexes over transformers' BLIP module names: the fused ViT qkv, and q/k/v of text self- and cross-attention.
DEFAULT_TARGETS = r".*(vision_model\.encoder\.layers\.\d+\.self_attn\.qkv|text_encoder\.encoder\.layer\.\d+\.(attention|crossattention)\.self\.(query|key|value))"


@dataclass
class LoraMethodConfig(MethodConfig):
    r: int = field(default=4, metadata={"help": "rank of each update"})
    alpha: float = field(default=8.0, metadata={"help": "scale: the update is multiplied by alpha / r"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    target_modules: str = field(default=DEFAULT_TARGETS, metadata={"help": "regex over module names"})


@register_method
class Lora(Method):
    name = "lora"
    config_cls = LoraMethodConfig
    description = "LoRA (peft) on ViT qkv and text self/cross-attention q, k, v"

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        freeze(model)
        peft_config = LoraConfig(
            r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.target_modules,
            task_type=None, bias="none",
        )
        try:
            inject_adapter_in_model(peft_config, model)
        except ValueError as err:  # peft: "Target modules ... not found in the base model"
            raise TargetingError(f"lora: {err}") from None
        trainable = [n for n, p in model.named_parameters() if "lora_" in n]
        if not trainable:
            raise TargetingError(f"lora: target_modules {cfg.target_modules!r} matched no Linear layer")
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
        return model
