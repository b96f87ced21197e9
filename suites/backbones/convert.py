"""Convert an original Salesforce BLIP checkpoint (``model_base.pth``, ``model_base_retrieval_coco.pth``,
``model_vqa.pth``, ...) into a transformers folder that the ``hf`` backbone loads (``aurora-bench convert-blip``).

The key mapping is the one transformers' own ``convert_blip_original_pytorch_to_hf.py`` applies (spec §7.1):
the ViT (``visual_encoder``, timm layout) is renamed onto ``vision_model``; the text encoder, the VQA answer
decoder and the retrieval heads keep their names. What transformers' BLIP has no place for is dropped and
listed: the momentum encoders (``*_m``), the feature queues, the position-id buffers (rebuilt by transformers)
and the parts another task needs (the caption decoder of ``model_base.pth`` for retrieval, its ITC/ITM heads
for VQA). The learned ITC temperature ``temp`` has no transformers parameter either: it is written beside the
weights (``CONVERSION_INFO``), where the ``hf`` builder reads it into ``Backbone.temp``.

Nothing is ever filled with random weights: a source that lacks a module the task needs, a weight without a
place, a shape that does not fit, or a transformers weight left unloaded is a ``ConversionError``.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from suites.backbones.blip import CONVERSION_INFO, blip_base_config, model_class

# BLIP's image normalisation (its transform.Normalize, OpenAI CLIP's statistics); resize is bicubic.
BLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The ViT: timm's VisionTransformer (BLIP's models/vit.py) -> transformers' BlipVisionModel.
_VISION_RULES = [
    (re.compile(r"^visual_encoder\.cls_token$"), "vision_model.embeddings.class_embedding"),
    (re.compile(r"^visual_encoder\.pos_embed$"), "vision_model.embeddings.position_embedding"),
    (re.compile(r"^visual_encoder\.patch_embed\.proj\.(weight|bias)$"), r"vision_model.embeddings.patch_embedding.\1"),
    (re.compile(r"^visual_encoder\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$"),
     r"vision_model.encoder.layers.\1.self_attn.qkv.\2"),
    (re.compile(r"^visual_encoder\.blocks\.(\d+)\.attn\.proj\.(weight|bias)$"),
     r"vision_model.encoder.layers.\1.self_attn.projection.\2"),
    (re.compile(r"^visual_encoder\.blocks\.(\d+)\.norm([12])\.(weight|bias)$"),
     r"vision_model.encoder.layers.\1.layer_norm\2.\3"),
    (re.compile(r"^visual_encoder\.blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)$"),
     r"vision_model.encoder.layers.\1.mlp.\2.\3"),
    (re.compile(r"^visual_encoder\.norm\.(weight|bias)$"), r"vision_model.post_layernorm.\1"),
]
# Modules whose names transformers keeps (BLIP's models/med.py BertModel / BertLMHeadModel and the heads).
_SAME_NAME = ("text_encoder", "text_decoder", "vision_proj", "text_proj", "itm_head")

# The original modules each task's transformers model is built from, and what they are.
TASK_MODULES = {
    "retrieval": ("visual_encoder", "text_encoder", "vision_proj", "text_proj", "itm_head"),
    "vqa": ("visual_encoder", "text_encoder", "text_decoder"),
}
_ROLE = {
    "visual_encoder": "the ViT", "text_encoder": "the text encoder", "text_decoder": "the answer decoder",
    "vision_proj": "the ITC image projection", "text_proj": "the ITC text projection", "itm_head": "the ITM head",
}
_MOMENTUM = {f"{m}_m" for m in ("visual_encoder", "text_encoder", "vision_proj", "text_proj")}
_QUEUES = {"image_queue", "text_queue", "idx_queue", "ptr_queue", "queue_ptr"}
_TEMPERATURE = "temp"
_POS_EMBED = "visual_encoder.pos_embed"
_WORD_EMBED = "text_encoder.embeddings.word_embeddings.weight"

# Reasons a source tensor is not loaded, in report order.
MOMENTUM = "momentum encoders (EMA copies; transformers' BLIP has none)"
QUEUES = "feature queues"
POSITION_IDS = "position-id buffers (transformers rebuilds them)"
OTHER_TASK = "modules the {task} model has no place for"
UNKNOWN = "unrecognised"


class ConversionError(ValueError):
    """An original BLIP checkpoint that cannot be converted as asked (one line saying why)."""


def hf_name(key: str) -> str | None:
    """The transformers name of an original BLIP weight, or None where the mapping has no rule for it."""
    for pattern, replacement in _VISION_RULES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return key if key.split(".", 1)[0] in _SAME_NAME else None


def load_original(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an original BLIP ``.pth`` (``{'model': state_dict, ...}`` or a bare state dict), read
    with ``weights_only=True``: a file that needs arbitrary unpickling is refused."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConversionError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found:
            raise ConversionError(
                f"{path.name} cannot be loaded with torch.load(weights_only=True) (it pickles {found.group(1)}): "
                "it holds Python objects besides tensors; on a machine you trust, re-save its weights alone, e.g. "
                "torch.save(torch.load(SRC, weights_only=False)['model'], 'weights.pth'), and convert that"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(err))
        first = detail.group(1) if detail else (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConversionError(f"{path.name} is not a readable torch checkpoint ({first})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConversionError(f"{path.name} is not a readable torch checkpoint: {first}") from None
    state = obj
    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), dict):
                state = obj[wrapper]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = f" (top-level keys: {', '.join(map(str, list(obj)[:6]))})" if isinstance(obj, dict) else ""
        raise ConversionError(f"{path.name} holds no BLIP state dict: expected {{'model': state_dict, ...}} or a "
                              f"dict of tensors, found {type(obj).__name__}{keys}")
    return state


def image_size_of(state: dict[str, torch.Tensor], patch: int = 16) -> int:
    """The image size an original checkpoint was trained at, from its ViT position embeddings (1 + g*g)."""
    pos = state[_POS_EMBED]
    grid = math.isqrt(pos.shape[1] - 1)
    if pos.ndim != 3 or grid * grid != pos.shape[1] - 1:
        raise ConversionError(f"{_POS_EMBED} has shape {tuple(pos.shape)}: not 1 + a square grid of positions")
    return grid * patch


def resize_position_embedding(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1 + g*g, d) -> (1, 1 + grid*grid, d): [CLS] kept, the patch grid resized bicubically
    (``align_corners=False``), as BLIP's ``interpolate_pos_embed`` does when it loads a checkpoint."""
    old = math.isqrt(pos.shape[1] - 1)
    if old == grid:
        return pos
    patches = pos[:, 1:].float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    patches = torch.nn.functional.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1].float(), patches.permute(0, 2, 3, 1).flatten(1, 2)], dim=1).to(pos.dtype)


def _sorted_keys(keys) -> list[str]:
    return sorted(keys, key=lambda k: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", k)])


def _module_counts(keys: list[str]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for k in keys:
        counts[k.split(".", 1)[0]] += 1
    return ", ".join(f"{m} ({n})" for m, n in counts.items())


@dataclass
class Conversion:
    """What ``convert_blip`` wrote and why (``lines()`` is what the CLI prints)."""

    source: Path
    out_dir: Path
    task: str
    model: str  # the transformers class
    parameters: int
    loaded: int  # source tensors loaded
    image_note: str
    tokenizer_note: str
    temperature: float | None
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> original keys

    def lines(self) -> list[str]:
        out = [f"converted {self.source.name} -> {self.out_dir} ({self.model}, {self.parameters:,} parameters "
               f"from {self.loaded} tensors)", self.image_note, self.tokenizer_note]
        if self.temperature is not None:
            out.append(f"ITC temperature temp = {self.temperature:.6g} kept in {CONVERSION_INFO} "
                       "(transformers' BLIP has no temperature parameter; the hf backbone reads it)")
        else:
            out.append("no ITC temperature (temp) in the source: the hf backbone keeps its default")
        total = sum(map(len, self.dropped.values()))
        out.append(f"dropped {total} tensors" + (":" if total else ""))
        for reason, keys in self.dropped.items():
            listed = _module_counts(keys) if reason in (MOMENTUM, OTHER_TASK.format(task=self.task)) \
                else ", ".join(keys)
            out.append(f"  {reason}: {listed}")
        return out


def _classify(state: dict[str, torch.Tensor], task: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """-> (original key -> transformers name for what is loaded, reason -> original keys dropped)."""
    keep = TASK_MODULES[task]
    other = OTHER_TASK.format(task=task)
    mapped: dict[str, str] = {}
    dropped: dict[str, list[str]] = {r: [] for r in (MOMENTUM, QUEUES, POSITION_IDS, other, UNKNOWN)}
    for key in _sorted_keys(state):
        module = key.split(".", 1)[0]
        if key == _TEMPERATURE:
            continue
        if module in _MOMENTUM:
            dropped[MOMENTUM].append(key)
        elif key in _QUEUES:
            dropped[QUEUES].append(key)
        elif key.endswith("embeddings.position_ids"):
            dropped[POSITION_IDS].append(key)
        elif module in _ROLE and module not in keep:
            dropped[other].append(key)
        elif module in keep and (name := hf_name(key)) is not None:
            mapped[key] = name
        elif module in keep:
            raise ConversionError(f"{key} has no transformers name (the mapping knows timm's ViT and BLIP's MED "
                                  "BERT layout): not an original BLIP checkpoint?")
        else:
            dropped[UNKNOWN].append(key)
    return mapped, {r: ks for r, ks in dropped.items() if ks}


def _check_modules(state: dict[str, torch.Tensor], task: str, name: str) -> None:
    present = {k.split(".", 1)[0] for k in state}
    missing = [m for m in TASK_MODULES[task] if m not in present]
    if not missing:
        lacking = [k for k in (_POS_EMBED, _WORD_EMBED) if k not in state]
        if lacking:
            raise ConversionError(f"{name} has no {', '.join(lacking)}: not an original BLIP checkpoint?")
        return
    what = ", ".join(f"{m} ({_ROLE[m]})" for m in missing)
    if task == "retrieval" and "text_decoder" in present:
        hint = "it looks like a VQA or captioning checkpoint (model_vqa.pth): convert it with --task vqa, or start " \
               "retrieval from model_base.pth or model_base_retrieval_*.pth"
    elif task == "vqa" and {"vision_proj", "itm_head"} & present:
        hint = "it looks like a retrieval checkpoint (model_base_retrieval_*.pth): convert it with --task " \
               "retrieval, or start VQA from model_vqa.pth or model_base.pth (the pretraining checkpoint)"
    else:
        hint = "not a BLIP checkpoint for this task"
    raise ConversionError(f"{name} has no {what}, which --task {task} needs: {hint}")


def conversion_config(config_path: str | Path | None, task: str, state: dict, image_size: int | None):
    """-> (BlipConfig, note on the image size, target patch grid)."""
    from transformers import BlipConfig

    pos = state[_POS_EMBED]
    if config_path is None:
        source_size = image_size_of(state, 16)
        config = blip_base_config(task, image_size=image_size or source_size)
        how = f"inferred from the checkpoint's {pos.shape[1]} ViT position embeddings " \
              f"({math.isqrt(pos.shape[1] - 1)}x{math.isqrt(pos.shape[1] - 1)} patches of 16 px + [CLS])"
    else:
        path = Path(config_path).expanduser()
        try:
            config = BlipConfig.from_pretrained(str(path)) if path.is_dir() else BlipConfig.from_json_file(str(path))
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConversionError(f"--config {path}: not a BlipConfig JSON ({first})") from None
        if image_size:
            config.vision_config.image_size = image_size
        how = f"from --config {path.name}"
    if image_size:
        how = "from --image-size"
    patch = config.vision_config.patch_size
    size = config.vision_config.image_size
    if size % patch:
        raise ConversionError(f"image size {size} px is not a multiple of the {patch}-px patches")
    grid, old = size // patch, math.isqrt(pos.shape[1] - 1)
    note = f"image size {size} px, {how}"
    if grid != old:
        note += (f"; ViT position embeddings resized from {old}x{old} to {grid}x{grid} patches (bicubic, "
                 "as BLIP's load_checkpoint does)")
    return config, note, grid


def load_tokenizer(folder: str | Path | None):
    """BLIP's tokenizer: the BERT vocabulary in ``folder`` (a ``vocab.txt``, or a saved BERT/BLIP tokenizer)
    plus ``[DEC]`` (bos) and ``[ENC]`` as additional special tokens, as BLIP's ``init_tokenizer`` builds it.
    -> (tokenizer, note)."""
    from transformers import BertTokenizer

    if folder is None:
        raise ConversionError("--tokenizer DIR is required: BLIP's tokenizer is bert-base-uncased's vocabulary, "
                              "which cannot be downloaded here; pass a local folder with its vocab.txt "
                              "(or a saved bert-base-uncased / BLIP tokenizer)")
    folder = Path(folder).expanduser()
    vocab = folder / "vocab.txt"
    saved = (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()
    if not folder.is_dir() or not (vocab.is_file() or saved):
        raise ConversionError(f"--tokenizer {folder}: expected a folder with vocab.txt or a saved tokenizer "
                              "(tokenizer.json / tokenizer_config.json)")
    try:
        tok = BertTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConversionError(f"--tokenizer {folder}: cannot load a BERT tokenizer ({first})") from None
    if vocab.is_file() and not saved:
        lines = len(vocab.read_text(encoding="utf-8").rstrip("\n").split("\n"))
        if len(tok) != lines:  # transformers ignoring the file would give a 5-token default vocabulary
            raise ConversionError(f"--tokenizer {folder}: read {len(tok)} tokens from a vocab.txt of {lines} lines")
    base = len(tok)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    dec, enc = tok.convert_tokens_to_ids("[DEC]"), tok.convert_tokens_to_ids("[ENC]")
    source = "vocab.txt" if vocab.is_file() and not saved else "saved tokenizer"
    note = (f"tokenizer: BERT vocabulary from --tokenizer {folder} ({source}, {base} tokens) + [DEC] {dec} (bos) "
            f"+ [ENC] {enc}: {len(tok)} tokens")
    return tok, note


def _processor(tok, image_size: int):
    from transformers import BlipImageProcessor, BlipProcessor
    from transformers.image_utils import PILImageResampling

    image = BlipImageProcessor(size={"height": image_size, "width": image_size}, resample=PILImageResampling.BICUBIC,
                               image_mean=list(BLIP_MEAN), image_std=list(BLIP_STD), do_convert_rgb=True)
    return BlipProcessor(image_processor=image, tokenizer=tok)


def _fit(state: dict[str, torch.Tensor], mapped: dict[str, str], model, grid: int) -> dict[str, torch.Tensor]:
    """The transformers-named tensors to load, the position embeddings resized to ``grid``; any other shape
    that does not fit the model is an error (a --config that does not match the checkpoint)."""
    target = model.state_dict()
    out, bad = {}, []
    for key, name in mapped.items():
        value = state[key]
        if key == _POS_EMBED:
            value = resize_position_embedding(value, grid)
        if name not in target:
            raise ConversionError(f"{key} -> {name}: the transformers model has no such weight; --config does not "
                                  "match the checkpoint (cross-attention needs text_config.is_decoder=true)")
        if tuple(value.shape) != tuple(target[name].shape):
            bad.append(f"{key} {tuple(value.shape)} vs {tuple(target[name].shape)}")
        out[name] = value
    if bad:
        raise ConversionError(f"{len(bad)} weights do not fit the model's shapes, e.g. {'; '.join(bad[:3])}: "
                              "pass a --config matching the checkpoint (BLIP-base: ViT-B/16, BERT-base)")
    return out


def _load_into(model, weights: dict[str, torch.Tensor], name: str) -> None:
    """Load ``weights`` (strict=False), then refuse unloaded weights and tied weights the source disagrees on."""
    result = model.load_state_dict(weights, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # _fit only passes names the model has
    params = model.state_dict(keep_vars=True)
    loaded_storage = {params[k].data_ptr() for k in weights}
    missing = [k for k in result.missing_keys
               if not k.endswith("position_ids") and params[k].data_ptr() not in loaded_storage]
    if missing:
        raise ConversionError(f"{name} lacks {len(missing)} weights the model needs, e.g. "
                              f"{', '.join(missing[:4])}: refusing to leave them randomly initialised")
    state = model.state_dict()
    differ = [k for k, v in weights.items() if not torch.equal(state[k], v.to(state[k].dtype))]
    if differ:
        raise ConversionError(f"{name}: tied weights disagree in the source ({', '.join(differ[:4])})")


def convert_blip(source: str | Path, out_dir: str | Path, task: str, config: str | Path | None = None,
                 tokenizer: str | Path | None = None, image_size: int | None = None) -> Conversion:
    """Convert the original BLIP checkpoint ``source`` into a ``save_pretrained`` folder ``out_dir`` for
    ``task`` (retrieval: ``BlipForImageTextRetrieval``; vqa: ``BlipForQuestionAnswering``): weights,
    ``BlipProcessor`` (tokenizer from ``tokenizer``, image processor at the image size) and ``CONVERSION_INFO``.

    ``config``: a BlipConfig JSON (or folder); default ``blip_base_config(task)`` at the image size of the
    checkpoint's position embeddings. ``image_size``: resize the position embeddings to it (bicubic)."""
    cls = model_class(task)
    source = Path(source).expanduser()
    if image_size is not None and image_size <= 0:
        raise ConversionError(f"--image-size must be positive, not {image_size}")
    if tokenizer is None:
        load_tokenizer(None)  # fails at once, before reading a large checkpoint
    state = load_original(source)
    _check_modules(state, task, source.name)
    mapped, dropped = _classify(state, task)
    temperature = float(state[_TEMPERATURE]) if _TEMPERATURE in state else None
    cfg, image_note, grid = conversion_config(config, task, state, image_size)
    tok, tokenizer_note = load_tokenizer(tokenizer)

    vocab_rows = state[_WORD_EMBED].shape[0]
    if len(tok) != vocab_rows:
        raise ConversionError(f"the tokenizer has {len(tok)} tokens with [DEC] and [ENC], the checkpoint's word "
                              f"embeddings {vocab_rows} rows: BLIP's tokenizer is bert-base-uncased's 30522-token "
                              "vocabulary + [DEC] + [ENC] (--tokenizer)")
    text = cfg.text_config  # the decoder's start, pad and end tokens are the tokenizer's
    text.bos_token_id, text.pad_token_id, text.sep_token_id = (
        tok.convert_tokens_to_ids("[DEC]"), tok.pad_token_id, tok.sep_token_id)
    tok.model_max_length = text.max_position_embeddings

    model = cls(cfg).eval()
    weights = _fit(state, mapped, model, grid)
    with torch.no_grad():
        _load_into(model, weights, source.name)

    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    _processor(tok, cfg.vision_config.image_size).save_pretrained(out_dir)
    info = {"converted_from": source.name, "task": task, "image_size": cfg.vision_config.image_size,
            "dropped": {reason: len(keys) for reason, keys in dropped.items()}}
    if temperature is not None:
        info = {"itc_temperature": temperature, **info}
    (out_dir / CONVERSION_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return Conversion(source=source, out_dir=out_dir, task=task, model=cls.__name__,
                      parameters=sum(p.numel() for p in model.parameters()), loaded=len(weights),
                      image_note=image_note, tokenizer_note=tokenizer_note, temperature=temperature, dropped=dropped)
