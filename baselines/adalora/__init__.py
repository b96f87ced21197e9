"""AdaLoRA through peft (Zhang et al., ICLR 2023, arXiv 2303.10512): SVD-shaped LoRA whose rank budget is
re-allocated during training by the importance of each singular triplet."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from peft import AdaLoraConfig
from torch import nn

from aurora.api import MethodConfig, register_method
from baselines._peft import PeftMethod, check_rank_and_dropout, target_modules_field


@dataclass
class AdaLoraMethodConfig(MethodConfig):
    init_r: int = field(default=12, metadata={"help": "starting rank of every update"})
    target_r: int = field(default=8, metadata={"help": "average rank left once the budget has shrunk"})
    alpha: float = field(default=8.0, metadata={"help": "scale of the update"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the AdaLoRA input"})
    warmup_fraction: float = field(default=0.1, metadata={"help": "share of steps trained before pruning starts (peft's tinit)"})
    final_fraction: float = field(default=0.2, metadata={"help": "share of steps trained at the final budget (peft's tfinal)"})
    delta_t: int = field(default=1, metadata={"help": "steps between two budget re-allocations"})
    orth_reg_weight: float = field(default=0.5, metadata={"help": "weight of the orthogonality regulariser on A and B"})
    target_modules: str = target_modules_field()

    def __post_init__(self):
        check_rank_and_dropout(self.init_r, self.dropout, "init_r")
        if not 1 <= self.target_r <= self.init_r:
            raise ValueError(f"target_r must be in [1, init_r={self.init_r}], got {self.target_r}")
        if not (0 <= self.warmup_fraction and 0 <= self.final_fraction and self.warmup_fraction + self.final_fraction < 1):
            raise ValueError("warmup_fraction and final_fraction must be >= 0 with a sum below 1, got "
                             f"{self.warmup_fraction} and {self.final_fraction}")
        if self.delta_t < 1:
            raise ValueError(f"delta_t must be a positive integer, got {self.delta_t}")
        if self.orth_reg_weight < 0:
            raise ValueError(f"orth_reg_weight must be >= 0, got {self.orth_reg_weight}")


@register_method
class AdaLora(PeftMethod):
    """dW = P diag(E) Q with E zero at init; the rank budget shrinks from init_r to target_r on average.

    Two parts of AdaLoRA live in peft's ``PeftModel`` wrapper, which the harness does not use; both come here
    through the method interface instead:
      - the budget update runs in ``on_step_end`` (after the optimizer step, gradients still in place);
      - the orthogonality regulariser is added to the gradients of A and B as they accumulate, which equals
        adding it to the loss (it is not part of the logged loss).
    """

    name = "adalora"
    config_cls = AdaLoraMethodConfig
    description = "AdaLoRA (peft): SVD-form LoRA with a rank budget re-allocated during training"

    def peft_config(self, target_modules: str) -> AdaLoraConfig:
        cfg = self.config
        # peft needs the step count now; the loop only tells it in on_step_end, which sets the real schedule.
        return AdaLoraConfig(
            init_r=cfg.init_r, target_r=cfg.target_r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
            deltaT=cfg.delta_t, orth_reg_weight=cfg.orth_reg_weight, target_modules=target_modules,
            total_step=1, task_type=None,
        )

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        self._tuner = self.build_tuner(model)
        self._scheduled = False
        if cfg.orth_reg_weight > 0:
            factors = [(n, p) for n, p in model.named_parameters() if "lora_A" in n or "lora_B" in n]
            weight = cfg.orth_reg_weight / len(factors)  # peft averages the terms over the factors
            for n, p in factors:
                p.register_post_accumulate_grad_hook(_orthogonality_grad(weight, rows="lora_A" in n))
        return model

    def on_step_end(self, model: nn.Module, step: int, total_steps: int) -> None:
        if not self._scheduled:
            self._set_schedule(total_steps)
        self._tuner.update_and_allocate(step + 1)  # peft counts steps done; the loop's step is 0-based

    def _set_schedule(self, total_steps: int) -> None:
        # The rank allocator reads the tuner's config on every call, so filling it in here is enough.
        peft_config = self._tuner.peft_config["default"]
        peft_config.total_step = total_steps
        peft_config.tinit = int(self.config.warmup_fraction * total_steps)
        peft_config.tfinal = int(self.config.final_fraction * total_steps)
        self._scheduled = True


def _orthogonality_grad(weight: float, rows: bool):
    """Hook adding the gradient of weight * ||G - I||_F, G the (r, r) Gram matrix of the factor's rank vectors
    (peft's regulariser, one term per factor): rows of A (r, d_in), columns of B (d_out, r)."""

    def hook(p: nn.Parameter) -> None:
        with torch.enable_grad():
            x = p.detach().requires_grad_(True)
            gram = x @ x.T if rows else x.T @ x  # (r, r)
            eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
            (grad,) = torch.autograd.grad(weight * torch.norm(gram - eye, p="fro"), x)
        p.grad.add_(grad)

    return hook
