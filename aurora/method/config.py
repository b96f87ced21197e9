from __future__ import annotations

from dataclasses import dataclass, field

from aurora.api import MethodConfig

VISION_TARGETS = ("qkv", "proj", "fc1", "fc2")
TEXT_TARGETS = ("self.q", "self.k", "self.v", "cross.q", "cross.k", "cross.v")


@dataclass
class AuroraConfig(MethodConfig):
    """Aurora (Wang et al., NeurIPS 2023, arXiv 2305.08381), as the official code implements it.

    Mode approximation: every adapted weight W gets dW = U . M(p) . V^T with globally shared U (d x R),
    V (d x R, zero-initialised) and core G, and one R-vector p per weight; M(p) = G x_3 p.
    """

    rank: int = field(default=32, metadata={"help": "R, the rank of the shared factors"})
    core: str = field(default="dense", metadata={"help": "'dense' (official code: R x R x R core) or 'cp' (paper: super-diagonal core)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the rank-R bottleneck"})
    vision_targets: tuple[str, ...] = field(default=VISION_TARGETS, metadata={"help": f"ViT weights to adapt, from {VISION_TARGETS}"})
    text_targets: tuple[str, ...] = field(default=TEXT_TARGETS, metadata={"help": f"BERT weights to adapt, from {TEXT_TARGETS}"})
    gqt: bool = field(default=True, metadata={"help": "Gated Query Transformation in image-grounded text layers"})
    gqt_scale: float = field(default=0.1, metadata={"help": "fixed gate of GQT"})
    gqt_init_std: float = field(default=2e-4, metadata={"help": "std of GQT's scale/shift initialisation"})
    ice: bool = field(default=True, metadata={"help": "Informative Context Enhancement on positive ITM pairs"})
    ice_alpha: float = field(default=0.1, metadata={"help": "weight of the batch text context added by ICE"})
    decode_delta: str = field(default="consistent", metadata={
        "help": "answer decoding with a KV cache: 'consistent' (delta on every token, as in training) or 'official' "
                "(the official code: no delta on decoder self-attention k, v of tokens decoded after the first step)"})

    def __post_init__(self):
        self.vision_targets = tuple(self.vision_targets)
        self.text_targets = tuple(self.text_targets)
        if self.core not in ("dense", "cp"):
            raise ValueError(f"core must be 'dense' or 'cp', got {self.core!r}")
        if self.decode_delta not in ("consistent", "official"):
            raise ValueError(f"decode_delta must be 'consistent' or 'official', got {self.decode_delta!r}")
        if self.rank < 1:
            raise ValueError(f"rank must be positive, got {self.rank}")
        for given, valid in ((self.vision_targets, VISION_TARGETS), (self.text_targets, TEXT_TARGETS)):
            bad = sorted(set(given) - set(valid))
            if bad:
                raise ValueError(f"unknown Aurora target(s) {bad}; valid: {list(valid)}")
