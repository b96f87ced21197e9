"""LoHa through peft (Hyeon-Woo et al., ICLR 2022, arXiv 2108.06098): a Hadamard product of two low-rank updates."""

from dataclasses import dataclass, field

from peft import LoHaConfig

from aurora.api import MethodConfig, register_method
from baselines._peft import PeftMethod, check_rank_and_dropout, target_modules_field


@dataclass
class LoHaMethodConfig(MethodConfig):
    r: int = field(default=4, metadata={"help": "rank of each of the two factors"})
    alpha: float = field(default=8.0, metadata={"help": "scale: the update is multiplied by alpha / r"})
    dropout: float = field(default=0.0, metadata={"help": "rank dropout (drops rows of the update while training)"})
    target_modules: str = target_modules_field()

    def __post_init__(self):
        check_rank_and_dropout(self.r, self.dropout)


@register_method
class LoHa(PeftMethod):
    """dW = (B1 A1) * (B2 A2), element-wise; peft zeroes one factor so the update starts at zero."""

    name = "loha"
    config_cls = LoHaMethodConfig
    description = "LoHa (peft): Hadamard product of low-rank updates on ViT qkv and text q, k, v"

    def peft_config(self, target_modules: str) -> LoHaConfig:
        cfg = self.config
        return LoHaConfig(r=cfg.r, alpha=cfg.alpha, rank_dropout=cfg.dropout, target_modules=target_modules,
                          task_type=None)
