"""VeRA through peft (Kopiczko et al., ICLR 2024, arXiv 2310.11454): frozen shared random projections, trained scales."""

from dataclasses import dataclass, field

from peft import VeraConfig

from aurora.api import MethodConfig, register_method
from baselines._peft import PeftMethod, check_rank_and_dropout, target_modules_field


@dataclass
class VeraMethodConfig(MethodConfig):
    r: int = field(default=256, metadata={"help": "rank of the shared random projections A (r x d) and B (d x r)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the VeRA input"})
    projection_seed: int = field(default=0, metadata={"help": "seed of the frozen shared projections"})
    target_modules: str = target_modules_field()

    def __post_init__(self):
        check_rank_and_dropout(self.r, self.dropout)


@register_method
class Vera(PeftMethod):
    """dW = diag(b) B diag(d) A with A, B frozen, seeded and shared by every layer; b (zeros) and d train.

    A and B are buffers regenerated from ``projection_seed``, so a checkpoint of b and d alone reloads exactly.
    """

    name = "vera"
    config_cls = VeraMethodConfig
    description = "VeRA (peft): trained scaling vectors around shared frozen random projections"

    def peft_config(self, target_modules: str) -> VeraConfig:
        cfg = self.config
        return VeraConfig(r=cfg.r, vera_dropout=cfg.dropout, projection_prng_key=cfg.projection_seed,
                          target_modules=target_modules, save_projection=True, task_type=None)
