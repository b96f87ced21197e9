"""LoKr through peft (Yeh et al., ICLR 2024, arXiv 2309.14859): a Kronecker product of a small and a low-rank factor."""

from dataclasses import dataclass, field

from peft import LoKrConfig

from aurora.api import MethodConfig, register_method
from baselines._peft import PeftMethod, check_rank_and_dropout, target_modules_field


@dataclass
class LoKrMethodConfig(MethodConfig):
    r: int = field(default=4, metadata={"help": "rank of the low-rank Kronecker factor"})
    alpha: float = field(default=8.0, metadata={"help": "scale: the update is multiplied by alpha / r"})
    dropout: float = field(default=0.0, metadata={"help": "rank dropout (drops rows of the update while training)"})
    decompose_factor: int = field(
        default=-1, metadata={"help": "size of the small Kronecker factor; -1 lets peft pick the most square split"}
    )
    target_modules: str = target_modules_field()

    def __post_init__(self):
        check_rank_and_dropout(self.r, self.dropout)
        if self.decompose_factor != -1 and self.decompose_factor < 1:
            raise ValueError(f"decompose_factor must be -1 (automatic) or a positive integer, got {self.decompose_factor}")


@register_method
class LoKr(PeftMethod):
    """dW = C kron (B A); peft zeroes one factor so the update starts at zero."""

    name = "lokr"
    config_cls = LoKrMethodConfig
    description = "LoKr (peft): Kronecker-product updates on ViT qkv and text q, k, v"

    def peft_config(self, target_modules: str) -> LoKrConfig:
        cfg = self.config
        return LoKrConfig(r=cfg.r, alpha=cfg.alpha, rank_dropout=cfg.dropout, decompose_factor=cfg.decompose_factor,
                          target_modules=target_modules, task_type=None)
