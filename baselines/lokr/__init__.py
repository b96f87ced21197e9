"""LoKr through peft (Yeh et al., ICLR 2024, arXiv 2309.14859): a Kronecker product of a small and a low-rank factor."""

from dataclasses import dataclass, field

from peft import LoKrConfig
from torch import nn

from aurora.api import Method, MethodConfig, register_method
from baselines._peft import ATTENTION_TARGETS, check_rank_and_dropout, inject


@dataclass
class LoKrMethodConfig(MethodConfig):
    r: int = field(default=4, metadata={"help": "rank of the low-rank Kronecker factor"})
    alpha: float = field(default=8.0, metadata={"help": "scale: the update is multiplied by alpha / r"})
    dropout: float = field(default=0.0, metadata={"help": "rank dropout (drops rows of the update while training)"})
    decompose_factor: int = field(
        default=-1, metadata={"help": "size of the small Kronecker factor; -1 lets peft pick the most square split"}
    )
    target_modules: str = field(default=ATTENTION_TARGETS, metadata={"help": "regex over module names"})

    def __post_init__(self):
        check_rank_and_dropout(self.r, self.dropout)
        if self.decompose_factor != -1 and self.decompose_factor < 1:
            raise ValueError(f"decompose_factor must be -1 (automatic) or a positive integer, got {self.decompose_factor}")


@register_method
class LoKr(Method):
    """dW = C kron (B A); peft zeroes one factor so the update starts at zero."""

    name = "lokr"
    config_cls = LoKrMethodConfig
    description = "LoKr (peft): Kronecker-product updates on ViT qkv and text q, k, v"

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        peft_config = LoKrConfig(r=cfg.r, alpha=cfg.alpha, rank_dropout=cfg.dropout,
                                 decompose_factor=cfg.decompose_factor, target_modules=cfg.target_modules,
                                 task_type=None)
        inject(self.name, peft_config, model)
        return model
