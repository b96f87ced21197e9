"""BLIP backbones from transformers: tiny (tests), the BLIP-base shape, and real checkpoints.

Every builder returns a ``Backbone`` whose model has its parameters tagged as backbone weights. Every BLIP
model built here (``from_config``, ``from_pretrained``, ``load_pretrained``) goes through ``prepared``: its text
cross-attention honours ``encoder_attention_mask`` where the installed transformers ignores it
(``fix_cross_attention_mask``), and its attention layers compute through the fused kernel
(``suites.backbones.attention``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import BlipConfig, BlipForImageTextRetrieval, BlipForQuestionAnswering

from aurora.api import mark_backbone
from aurora.arch import architecture_of
from aurora.registry import UnknownNameError
from suites.backbones.attention import use_sdpa
from suites.backbones.base import BACKBONES, Backbone, BackboneUnavailable


def blip_config(
    hidden: int = 128,
    layers: int = 3,
    heads: int = 4,
    mlp: int = 512,
    image_size: int = 48,
    patch: int = 16,
    vocab_size: int = 128,
    proj: int = 64,
    dropout: float = 0.0,
    init_std: float = 0.02,
) -> BlipConfig:
    """A small BLIP config. ``is_decoder=True`` keeps cross-attention in every text layer (ITM needs it)."""
    vision = dict(
        hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers, num_attention_heads=heads,
        image_size=image_size, patch_size=patch,
        initializer_range=init_std,  # the vision default (1e-10) leaves position/CLS embeddings at ~0
    )
    text = dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
        num_attention_heads=heads, encoder_hidden_size=hidden, is_decoder=True,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, pad_token_id=0,
        max_position_embeddings=64, initializer_range=init_std, bos_token_id=None, sep_token_id=None,
    )
    return BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=proj, initializer_range=init_std)


# The transformers model class of each task; VQA adds an answer decoder beside the text encoder.
MODEL_CLASSES = {"retrieval": BlipForImageTextRetrieval, "vqa": BlipForQuestionAnswering}


def model_class(task: str) -> type:
    if task not in MODEL_CLASSES:
        raise UnknownNameError(f"unknown task {task!r}; valid tasks: {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[task]


def blip_base_config(task: str = "retrieval", image_size: int = 384) -> BlipConfig:
    """BLIP-base (ViT-B/16 + BERT-base MED) as BLIP builds it. ``BlipConfig()`` is not quite it: its text
    encoder has 8 attention heads (BLIP: 12) and its ViT LayerNorms eps 1e-5 (BLIP's ViT: 1e-6).

    Both tasks share the architecture. Image size: 384 for both, as transformers' released checkpoints
    (Salesforce/blip-itm-base-coco, blip-vqa-base) have it; BLIP fine-tuned its VQA model at 480 px
    (configs/vqa.yaml), and transformers' conversion resized its position embeddings to 384: an original VQA
    checkpoint is read with ``image_size=480`` (+248,832 position-embedding weights).
    """
    model_class(task)  # an unknown task fails here
    text = dict(
        vocab_size=30524,  # bert-base-uncased's 30522 + [DEC] + [ENC]
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12,  # BlipTextConfig's default is 8
        layer_norm_eps=1e-12, max_position_embeddings=512,
        encoder_hidden_size=768, is_decoder=True,  # cross-attention in every layer
        bos_token_id=30522, pad_token_id=0, sep_token_id=102,  # [DEC], [PAD], [SEP]
    )
    vision = dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        image_size=image_size, patch_size=16,
        layer_norm_eps=1e-6,  # BlipVisionConfig's default is 1e-5
    )
    return BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=256, projection_dim=512)


def from_config(config: BlipConfig, seed: int = 0, task: str = "retrieval") -> torch.nn.Module:
    cls = model_class(task)
    torch.manual_seed(seed)
    return prepared(mark_backbone(cls(config).eval()))


def from_pretrained(source: str | Path, model_cls: type) -> torch.nn.Module:
    """A BLIP model of ``model_cls`` loaded from ``source`` (a hub id or a ``save_pretrained`` folder), in
    eval mode, ``prepared``."""
    return prepared(model_cls.from_pretrained(source).eval())


@dataclass
class LoadReport:
    """How a checkpoint's weights matched the model class it was loaded as (transformers' loading info)."""

    source: str
    model_class: str
    missing: list[str]  # the model's weights the checkpoint lacks: left at random initialisation
    unexpected: list[str]  # the checkpoint's weights the model has no place for: dropped
    mismatched: list[str]  # weights of another shape than the model's: left at random initialisation

    @property
    def random(self) -> list[str]:
        return sorted(self.missing + self.mismatched)

    def summary(self) -> str:
        """One line: what was loaded, what starts random, what was dropped."""
        parts = [f"random init (not in the checkpoint): {_by_module(self.missing)}" if self.missing else "",
                 f"random init (other shape): {_by_module(self.mismatched)}" if self.mismatched else "",
                 f"unused checkpoint weights: {_by_module(self.unexpected)}" if self.unexpected else ""]
        return f"{self.source} as {self.model_class}: " + ("; ".join(p for p in parts if p) or
                                                           "every weight loaded, none left over")

    def check(self, task: str, allow_missing_weights: bool) -> None:
        """A model with weights its checkpoint does not have (a retrieval checkpoint loaded for VQA has no
        answer decoder) fails, one line; ``allow_missing_weights`` turns that into a warning."""
        if not self.random:
            return
        if not allow_missing_weights:
            other = f" (it holds {_by_module(self.unexpected)} instead)" if self.unexpected else ""
            raise BackboneUnavailable(
                f"{self.source} has no weights for {_by_module(self.random)} of the {task} model ({self.model_class})"
                f"{other}: a checkpoint for another task? Load a {task} checkpoint ({TASK_CHECKPOINTS[task]}, or "
                f"`aurora-bench convert-blip SRC.pth DIR --task {task}`), or set the backbone option "
                "allow_missing_weights: true to start them from random weights")
        warnings.warn(f"allow_missing_weights: {self.summary()}; results measure a model with untrained "
                      f"{_by_module(self.random)}", RuntimeWarning, stacklevel=3)


# The released transformers checkpoint of each task
TASK_CHECKPOINTS = {"retrieval": "Salesforce/blip-itm-base-coco", "vqa": "Salesforce/blip-vqa-base"}


def _by_module(keys: list[str]) -> str:
    """Weight names counted by top-level module: "text_decoder (63), itm_head (2)"."""
    counts = Counter(k.split(".", 1)[0] for k in keys)
    return ", ".join(f"{module} ({n})" for module, n in sorted(counts.items()))


@contextlib.contextmanager
def _quiet_transformers_load_report():
    """transformers logs a table of every missing or unexpected weight; ``LoadReport`` says it in a line."""
    def errors_only(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    # a filter, not a level: transformers runs extra checks (and warns about them) when the level is raised
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addFilter(errors_only)
    try:
        yield
    finally:
        logger.removeFilter(errors_only)


def load_pretrained(source: str | Path, model_cls: type) -> tuple[torch.nn.Module, LoadReport]:
    """``from_pretrained`` with the loading report: weights of another shape are reported (as random)
    rather than raised after a table of them."""
    with _quiet_transformers_load_report():
        model, info = model_cls.from_pretrained(source, output_loading_info=True, ignore_mismatched_sizes=True)
    mismatched = [m[0] if isinstance(m, tuple) else m for m in info.get("mismatched_keys", ())]
    report = LoadReport(str(source), model_cls.__name__, sorted(info.get("missing_keys", ())),
                        sorted(info.get("unexpected_keys", ())), sorted(mismatched))
    return prepared(model.eval()), report


# ---------------------------------------------------------------- the cross-attention mask
#
# transformers' BlipTextLayer hands the (additive, extended) encoder mask to its cross-attention as
# ``attention_mask``; BlipTextAttention passes it on as ``attention_mask``; BlipTextSelfAttention, when
# cross-attending, replaces ``attention_mask`` by its own ``encoder_attention_mask`` argument, which nobody
# passes: every cross-attention reads padded encoder positions. Retrieval never pads its image tokens; VQA's
# answer decoder cross-attends to padded question states. The fix is a forward pre-hook on each
# cross-attention core that passes the mask it was given on as ``encoder_attention_mask``, so the core
# applies exactly the mask BlipTextModel built for it, in the convention it already adds to its scores.


def _pass_encoder_mask(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if kwargs.get("encoder_hidden_states") is not None and kwargs.get("encoder_attention_mask") is None:
        kwargs["encoder_attention_mask"] = kwargs.get("attention_mask")
    return args, kwargs


def _hook_cross_attention(model: nn.Module) -> nn.Module:
    arch = architecture_of(model)
    for layer in arch.text_layers(model):
        cross = arch.cross_attention(layer)
        if cross is None:
            continue
        core = arch.attention_core(cross)
        if not getattr(core, "_passes_encoder_mask", False):
            core.register_forward_pre_hook(_pass_encoder_mask, with_kwargs=True)
            core._passes_encoder_mask = True
    return model


def _mask_leak(model: nn.Module) -> float:
    """Largest change of a text model's output when its encoder states gain positions the mask excludes
    (0 where the cross-attention honours the mask)."""
    d = model.config.encoder_hidden_size
    ids = torch.tensor([[1, 5, 6, 7]])
    states = torch.randn(1, 3, d)
    padded = torch.cat([states, 10 * torch.randn(1, 2, d)], dim=1)  # loud extra positions, masked out below
    out = model(input_ids=ids, encoder_hidden_states=states, encoder_attention_mask=torch.ones(1, 3)).last_hidden_state
    out_padded = model(input_ids=ids, encoder_hidden_states=padded,
                       encoder_attention_mask=torch.tensor([[1, 1, 1, 0, 0]])).last_hidden_state
    return float((out - out_padded).abs().max())


@functools.cache
def cross_attention_ignores_mask() -> bool:
    """Whether the installed transformers' BLIP text cross-attention ignores ``encoder_attention_mask``,
    found by behaviour once per process (a tiny random BLIP text model, CPU, the global RNG untouched)."""
    from transformers import BlipTextConfig
    from transformers.models.blip.modeling_blip_text import BlipTextModel

    with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch.no_grad():
        torch.manual_seed(0)
        config = BlipTextConfig(vocab_size=16, hidden_size=16, encoder_hidden_size=16, intermediate_size=32,
                                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=8,
                                is_decoder=True, bos_token_id=None, sep_token_id=None)
        model = BlipTextModel(config, add_pooling_layer=False).float().eval()
        if _mask_leak(model) <= 1e-5:
            return False
        leak = _mask_leak(_hook_cross_attention(model))
    if leak > 1e-5:
        warnings.warn(f"this transformers' BLIP cross-attention ignores encoder_attention_mask and the suite's "
                      f"fix does not repair it (output still moves by {leak:.2g}); padded encoder positions "
                      "are attended (VQA answers read padded question states)", RuntimeWarning, stacklevel=2)
        return False
    return True


def fix_cross_attention_mask(model: nn.Module) -> nn.Module:
    """Make ``model``'s BLIP text cross-attention honour ``encoder_attention_mask`` (in place; idempotent),
    only while the installed transformers needs it (``cross_attention_ignores_mask``)."""
    return _hook_cross_attention(model) if cross_attention_ignores_mask() else model


def prepared(model: nn.Module) -> nn.Module:
    """A BLIP model as the suite runs it (in place): the cross-attention mask honoured, attention fused."""
    return use_sdpa(fix_cross_attention_mask(model))


# Written beside the weights by ``suites.backbones.convert`` (``aurora-bench convert-blip``): what transformers'
# BLIP has no place for, above all the learned ITC temperature (``{"itc_temperature": ...}``).
CONVERSION_INFO = "aurora_bench.json"


def itc_temperature(folder: str | Path) -> float | None:
    """The ITC temperature a converted checkpoint folder carries in ``CONVERSION_INFO``, or None."""
    path = Path(folder) / CONVERSION_INFO
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("itc_temperature")
        return None if value is None else float(value)
    except (ValueError, TypeError, AttributeError) as err:
        raise BackboneUnavailable(f"{path}: no readable itc_temperature ({type(err).__name__}: {err})") from None


class _IdTokenizer:
    """Tokenizer stand-in for random-weight backbones: hashes words into the vocabulary."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def __call__(self, texts: list[str], max_length: int = 35) -> dict[str, torch.Tensor]:
        rows = [[1] + [4 + zlib.crc32(w.encode()) % (self.vocab_size - 4) for w in t.split()][: max_length - 2] + [2] for t in texts]
        length = max(map(len, rows))
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}


@BACKBONES.register("test-tiny")
def tiny(seed: int = 0, task: str = "retrieval", **overrides) -> Backbone:
    """A random-weight BLIP small enough for unit tests (hidden 32, 2 layers, 32 px)."""
    cfg = dict(hidden=32, layers=2, heads=2, mlp=64, image_size=32, patch=16, vocab_size=64, proj=16)
    cfg.update(overrides)
    model = from_config(blip_config(**cfg), seed, task)
    return Backbone(model, _IdTokenizer(cfg["vocab_size"]), enc_token_id=3, image_size=cfg["image_size"],
                    source="test-tiny (random init)")


@BACKBONES.register("blip-base")
def blip_base(seed: int = 0, task: str = "retrieval") -> Backbone:
    """The BLIP-base architecture (``blip_base_config``) with random weights: for parameter accounting offline."""
    model = from_config(blip_base_config(task), seed, task)
    return Backbone(model, _IdTokenizer(model.config.text_config.vocab_size), enc_token_id=30523,
                    image_size=model.config.vision_config.image_size, source="blip-base architecture (random init)")


# The files of a save_pretrained folder, each group by the names any one of which will do
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_PROCESSOR_FILES = {"image processor": ("preprocessor_config.json", "processor_config.json"),
                    "tokenizer": ("tokenizer.json", "vocab.txt")}


def check_checkpoint_folder(folder: Path, task: str) -> None:
    """A local checkpoint folder has a config, weights and processor files, or fails naming what is missing."""
    if not (folder / "config.json").is_file():
        raise BackboneUnavailable(
            f"checkpoint path {folder} has no config.json; expected a directory written by save_pretrained "
            "(config.json, model.safetensors and the processor files)"
        )
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise BackboneUnavailable(f"checkpoint folder {folder} has a config.json but no weights (model.safetensors); "
                                  "expected a directory written by save_pretrained")
    missing = [f"{what} ({' or '.join(names)})" for what, names in _PROCESSOR_FILES.items()
               if not any((folder / name).is_file() for name in names)]
    if missing:
        raise BackboneUnavailable(
            f"checkpoint folder {folder} has the model but no {' and no '.join(missing)}; add them with "
            f"`AutoProcessor.from_pretrained(SOURCE).save_pretrained('{folder}')` (SOURCE: the checkpoint the weights "
            f"came from, e.g. {TASK_CHECKPOINTS[task]}), or convert an original BLIP .pth with `aurora-bench "
            f"convert-blip SRC.pth {folder} --task {task} --tokenizer BERT_DIR`, which writes them")


@BACKBONES.register("hf")
def pretrained(name_or_path: str = "Salesforce/blip-itm-base-coco", seed: int = 0, task: str = "retrieval",
               allow_missing_weights: bool = False) -> Backbone:
    """A real BLIP checkpoint (retrieval or VQA): a local ``save_pretrained`` directory or a hub id already cached.

    Its weights must cover the task's model; ``allow_missing_weights`` starts the ones it lacks from random
    initialisation instead, with a warning, and the backbone's ``source`` (recorded with every result) says so.
    ``info["load_report"]``: the one-line ``LoadReport`` summary."""
    from transformers import AutoProcessor

    local = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith((".", "/", "~")) or local.exists()
    model_cls = model_class(task)
    if looks_local:
        check_checkpoint_folder(local, task)
    source = str(local) if looks_local else name_or_path
    try:
        model, report = load_pretrained(source, model_cls)
        processor = AutoProcessor.from_pretrained(source)
    except OSError as err:
        if looks_local:  # the files are there (checked above) but do not read
            raise BackboneUnavailable(f"cannot load checkpoint folder {local}: {str(err).splitlines()[0]}") from None
        raise BackboneUnavailable(
            f"cannot load {name_or_path!r} from the hub (offline or not cached: {type(err).__name__}); "
            "download it on a connected machine (`hf download "
            f"{name_or_path} --local-dir DIR`) and pass the local directory instead, or use a registered "
            f"backbone: {', '.join(n for n in BACKBONES.names() if n != 'hf')}"
        ) from None
    report.check(task, allow_missing_weights)
    tok = processor.tokenizer
    temp = itc_temperature(local) if looks_local else None  # converted original checkpoints carry theirs
    enc = tok.convert_tokens_to_ids("[ENC]") if "[ENC]" in tok.get_vocab() else tok.cls_token_id
    size = model.config.vision_config.image_size
    image_processor = processor.image_processor

    def tokenizer(texts, max_length=35):
        out = tok(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    tokenizer.decode = lambda ids: tok.decode(ids, skip_special_tokens=True)  # generated answers -> text

    untrained = f" [random init: {_by_module(report.random)}]" if report.random else ""
    return Backbone(
        mark_backbone(model), tokenizer, enc_token_id=enc, image_size=size,
        image_mean=tuple(image_processor.image_mean), image_std=tuple(image_processor.image_std),
        source=f"{name_or_path} ({os.path.basename(source)}){untrained}", info={"load_report": report.summary()},
        **({} if temp is None else {"temp": temp}),
    )
