"""Prompt tuning on both towers: visual prompt tuning in the ViT (Jia et al., ECCV 2022, arXiv 2203.12119) and
learnable text prompt tokens in the BERT text encoder (Lester et al., EMNLP 2021, arXiv 2104.08691).

peft's prompt tuning serves language models only (and never reaches the ViT), so this is our own: forward
hooks on the towers the model's architecture map names, no forked model code. Shapes: B batch, P prompt tokens, d hidden,
N image patches, L text length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from aurora.api import Method, MethodConfig, TargetingError, freeze, register_method
from aurora.arch import Architecture, Tower, architecture_of

DEPTHS = ("shallow", "deep")


@dataclass
class PromptTuningConfig(MethodConfig):
    tokens: int = field(default=10, metadata={"help": "P, prompt tokens per tower (and per layer when deep)"})
    depth: str = field(default="shallow", metadata={"help": f"one of {DEPTHS}: prompts after the embeddings only, "
                                                            "or fresh prompts at every layer"})
    vision: bool = field(default=True, metadata={"help": "prompt the ViT (VPT)"})
    text: bool = field(default=True, metadata={"help": "prompt the text encoder"})
    init_std: float = field(default=0.02, metadata={"help": "std of the prompts' normal initialisation"})

    def __post_init__(self):
        if self.depth not in DEPTHS:
            raise ValueError(f"depth must be one of {list(DEPTHS)}, got {self.depth!r}")
        if self.tokens < 1:
            raise ValueError(f"tokens must be a positive integer, got {self.tokens}")
        if not (self.vision or self.text):
            raise ValueError("prompt_tuning needs vision=True, text=True or both")


class Prompts(nn.Module):
    """P learnable tokens for one tower, one set per layer when deep: ``tokens`` (sets, P, d).

    The prompts sit right after token 0, so the image [CLS] and the text [CLS]/[ENC] keep position 0 (ITC and
    ITM read it there). Every layer attends to them; the tower's encoder drops them from its output, so what
    leaves the tower has the backbone's shape (the decoder's and the retrieval code's masks still fit).
    """

    def __init__(self, sets: int, tokens: int, d: int, init_std: float, device: torch.device):
        super().__init__()
        self.tokens = nn.Parameter(torch.empty(sets, tokens, d, device=device).normal_(0.0, init_std))

    def attach(self, embeddings: nn.Module, encoder: nn.Module, layers: nn.ModuleList) -> None:
        embeddings.register_forward_hook(lambda m, args, h: self._with(0, h, replace=False))
        for i in range(1, len(self.tokens)):  # deep: layer i gets fresh prompts in place of the previous ones
            layers[i].register_forward_pre_hook(self._replacer(i), with_kwargs=True)
        encoder.register_forward_hook(self._drop)

    def _with(self, i: int, h: torch.Tensor, replace: bool) -> torch.Tensor:
        """h (B, 1 + [P] + rest, d) -> (B, 1 + P + rest, d) with set i as the prompts."""
        p = self.tokens[i].expand(h.shape[0], -1, -1).to(h.dtype)
        rest = h[:, 1 + p.shape[1]:] if replace else h[:, 1:]
        return torch.cat([h[:, :1], p, rest], dim=1)

    def _replacer(self, i: int):
        def hook(module, args, kwargs):
            if args:
                return (self._with(i, args[0], replace=True), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": self._with(i, kwargs["hidden_states"], replace=True)}

        return hook

    def _drop(self, module, args, output):
        h = output.last_hidden_state
        output.last_hidden_state = torch.cat([h[:, :1], h[:, 1 + self.tokens.shape[1]:]], dim=1)
        return output


def _extend_mask(n_prompts: int):
    """Pre-hook on a text model: the attention mask (B, L) gains P ones after position 0."""

    def hook(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is None:  # no mask: every token is attended, prompts included
            return args, kwargs
        ones = mask.new_ones(mask.shape[0], n_prompts)
        return args, {**kwargs, "attention_mask": torch.cat([mask[:, :1], ones, mask[:, 1:]], dim=1)}

    return hook


@register_method
class PromptTuning(Method):
    """>>> model = aurora.create_method("prompt_tuning", tokens=10, depth="deep").apply(backbone.model)

    Text prompts go into the text encoder (captions; VQA questions), not the VQA answer decoder: generation
    with a key/value cache feeds the decoder one token at a time and cannot take prepended tokens.
    """

    name = "prompt_tuning"
    config_cls = PromptTuningConfig
    description = "prompt tuning: VPT (shallow or deep) in the ViT and learnable tokens in the text encoder"
    identity_at_init = False  # the prompts join the attention from the first step

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        arch = architecture_of(model)
        freeze(model)
        towers = [t for t in arch.towers(model) if (cfg.vision and t.kind == "vision") or (cfg.text and t.kind == "text")]
        if not towers:
            raise TargetingError(f"prompt_tuning found no vision tower or text encoder to prompt in this {arch.name!r} "
                                 "model")
        for tower in towers:
            self._prompt(arch, tower)
        return model

    def _prompt(self, arch: Architecture, tower: Tower) -> None:
        cfg, module = self.config, tower.module
        layout, layers = arch.layout_of(module), arch.layers_of(module)
        sets = len(layers) if cfg.depth == "deep" else 1
        module.prompts = Prompts(sets, cfg.tokens, arch.width_of(module), cfg.init_std, next(module.parameters()).device)
        module.prompts.attach(module.get_submodule(layout.embeddings), module.get_submodule(layout.encoder), layers)
        if tower.kind == "text":
            module.register_forward_pre_hook(_extend_mask(cfg.tokens), with_kwargs=True)
