"""Grow the proxy BLIP into a VQA model and pretrain its answer decoder on synthetic QA, cached on disk.

BLIP's VQA checkpoints start from the retrieval-pretrained towers and add an answer decoder; Aurora's QA
runs then start from a model already fine-tuned for VQA. The proxy does the same at small scale: the ViT
and the text encoder come from the retrieval-pretrained proxy (``suites.synthetic.pretrain``), the tokenizer
grows by the question words, the decoder starts as a copy of the text encoder (BLIP also initialises its
decoder from pretrained BERT weights), and the whole model trains on QA from the pretraining distribution
(flat backgrounds, seen colour-shape pairs, base phrasings). The cache key hashes this recipe together with
the retrieval recipe it grows from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from suites.backbones import Backbone
from suites.backbones.blip import from_config
from suites.engine.loop import TrainConfig, fit
from suites.synthetic import qa, world
from suites.synthetic.pretrain import (
    WORLD_VERSION,
    PretrainConfig,
    cache_key,
    cache_root,
    cached_backbone,
    key_settings,
    load_or_pretrain,
)
from suites.synthetic.tokenizer import WordTokenizer
from suites.tasks.retrieval import LossSettings
from suites.tasks.vqa import VQAObjective, evaluate

# bump when suites.synthetic.qa changes what a seed generates, or when what the proxy VQA model computes changes.
# 3: the answer decoder now honours the question mask (suites.backbones.blip.fix_cross_attention_mask); entries
# pretrained while it cross-attended to padded question states are not reused. The retrieval proxy is
# unaffected (its cross-attention masks are all ones), so its key stays.
QA_VERSION = 3


@dataclass(frozen=True)
class QAPretrainConfig:
    seed: int = 0
    n_images: int = 3000
    questions_per_image: int = 4
    eval_images: int = 250
    retrieval: PretrainConfig = PretrainConfig()
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=600, batch_size=32, lr=5e-4, warmup=30, eval_every=100))
    k_test: int = 8
    # unused by VQA; part of the cache key since the key's settings were first laid out
    loss: LossSettings = field(default_factory=LossSettings)

    def key(self) -> str:
        # the grown vocabulary is part of the key: clip questions add words the pretraining never asks
        return cache_key({"world": WORLD_VERSION, "qa": QA_VERSION, "retrieval": self.retrieval.key(),
                          "vocabulary": qa.vocabulary(), **key_settings(self)})


def grow(retrieval: Backbone, seed: int = 0) -> Backbone:
    """A ``BlipForQuestionAnswering`` with the retrieval proxy's ViT and text encoder, a tokenizer grown by
    the question words (new embedding rows keep their random initialisation), and a decoder copied from the
    text encoder (its LM head is tied to the copied word embeddings)."""
    old_tok = retrieval.tokenizer
    tok = WordTokenizer(old_tok.id_to_token[len(old_tok.SPECIALS):] + qa.vocabulary())  # old ids unchanged
    config = retrieval.model.config.__class__.from_dict(retrieval.model.config.to_dict())
    config.text_config.vocab_size = tok.vocab_size
    model = from_config(config, seed=seed, task="vqa")
    source = retrieval.model.state_dict()
    target = model.state_dict()
    for name, value in source.items():
        tower = name.split(".", 1)[0]
        if tower not in ("vision_model", "text_encoder"):
            continue  # ITC projections and the ITM head have no place in the VQA model
        names = [name] + ([name.replace("text_encoder.", "text_decoder.bert.", 1)] if tower == "text_encoder" else [])
        for dst in names:
            rows = value.shape[0]
            target[dst][:rows].copy_(value)  # word embeddings: the old vocabulary's rows only
    model.load_state_dict(target)
    model.tie_weights()
    return Backbone(model, tok, enc_token_id=tok.enc_token_id, image_size=retrieval.image_size,
                    temp=retrieval.temp, max_text_length=32, source="proxy-vqa (grown from the retrieval proxy)")


def qa_split(seed: int, n_images: int, questions: int, shift: world.Shift | None = None):
    return qa.vqa_data(qa.make_qa_split(seed, n_images, questions, shift or world.Shift()))


def pretrain(cfg: QAPretrainConfig, progress: bool = True) -> tuple[Backbone, dict]:
    retrieval = load_or_pretrain(cfg.retrieval.seed, cfg=cfg.retrieval, progress=progress)
    backbone = grow(retrieval, cfg.seed)
    model = backbone.model
    for p in model.parameters():
        p.requires_grad_(True)
    # seeds 2000+ never meet the retrieval pretraining's scenes (seed, seed + 1000)
    train = qa_split(cfg.seed + 2000, cfg.n_images, cfg.questions_per_image)
    start = time.perf_counter()
    stats = fit(model, VQAObjective(backbone), train, cfg.train, seed=cfg.seed,
                progress="pretraining the proxy VQA decoder" if progress else None)
    held_in = qa_split(cfg.seed + 3000, cfg.eval_images, cfg.questions_per_image)
    metrics = evaluate(model, backbone, held_in, k_test=cfg.k_test)
    for p in model.parameters():
        p.requires_grad_(False)
    info = {"pretrain_seconds": time.perf_counter() - start, "temp": backbone.temp, **stats,
            "retrieval_backbone": retrieval.source, **{f"pretrain_{k}": v for k, v in metrics.items()}}
    backbone.info = info
    return backbone, info


def load_or_pretrain_vqa(seed: int = 0, cache_dir: str | None = None, cfg: QAPretrainConfig | None = None,
                         progress: bool = True) -> Backbone:
    from transformers import BlipForQuestionAnswering

    cfg = cfg or QAPretrainConfig(seed=seed, retrieval=PretrainConfig(seed=seed))
    folder = Path(cache_dir).expanduser() if cache_dir else cache_root() / "proxy-vqa" / cfg.key()
    return cached_backbone(folder, "proxy-vqa", cfg, BlipForQuestionAnswering, cfg.retrieval.model.image_size,
                           lambda: pretrain(cfg, progress))