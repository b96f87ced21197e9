"""Pretrain the proxy-tier BLIP on synthetic scenes (ITC + ITM), deterministically, cached on disk.

The cache key hashes the pretraining config and the world version, so a changed recipe never reuses a
stale model. ``AURORA_CACHE`` (default ``~/.cache/aurora-bench``) sets where it lives.

The package ships the entries of the current recipes (``bundled/<label>/<key>/``, the cache's own layout, made by
``python -m suites.synthetic.bundle``): a cache that lacks an entry starts from the bundled copy of the same key
instead of minutes of pretraining. Any other key pretrains as before; ``AURORA_BUNDLED=0`` ignores the bundle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aurora.checkpoint import file_sha256
from suites.backbones import Backbone
from suites.backbones.blip import blip_config, from_config, from_pretrained
from suites.engine.loop import TrainConfig, fit
from suites.synthetic import world
from suites.synthetic.tokenizer import WordTokenizer
from suites.tasks.retrieval import LossSettings, RetrievalData, RetrievalObjective, evaluate

WORLD_VERSION = 1  # bump when the synthetic world changes what a seed generates


@dataclass(frozen=True)
class ProxyModelConfig:
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    mlp: int = 512
    image_size: int = 48
    patch: int = 16  # one patch per grid cell: half the step time of patch 8
    proj: int = 64
    # 0.05 rather than BERT's 0.02: at 0.02 every caption starts with nearly the same [CLS] state and ITC
    # sits at ln(batch) for ~100 steps before the symmetry breaks; at 0.05 it learns from the start.
    init_std: float = 0.05


@dataclass(frozen=True)
class PretrainConfig:
    seed: int = 0
    n_images: int = 4000
    captions_per_image: int = 5
    eval_images: int = 300
    model: ProxyModelConfig = ProxyModelConfig()
    # Batch 64 with every pair in ITM beat batch 128 with half of them: ITM needs many updates to learn
    # binding (colour + shape + place), and the image-grounded pass is what a step costs.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=650, batch_size=64, lr=5e-4, warmup=30, eval_every=100))
    loss: LossSettings = field(default_factory=LossSettings)
    k_test: int = 16
    # the pretraining check re-ranks with BLIP's score, where ITM all but decides the order among the top-k:
    # a stricter test that ITM learned than the suites' default
    rerank_itc_weight: float | None = 1.0
    temp_init: float = 0.07

    def key(self) -> str:
        return cache_key({"world": WORLD_VERSION, **key_settings(self)})


def key_settings(config) -> dict:
    """``settings(config)`` with the task settings inside ``train``, where they lived when the cache entries
    were first keyed: keys, and so the cached backbones, stay valid."""
    return _task_settings_in_train(settings(config))


def _task_settings_in_train(blob: dict) -> dict:
    blob = {k: _task_settings_in_train(v) if isinstance(v, dict) and "train" in v else v for k, v in blob.items()}
    task = {k: blob.pop(k) for k in ("loss", "k_test", "rerank_itc_weight") if k in blob}
    return {**blob, "train": {**blob["train"], **task}}


def settings(config) -> dict:
    """A config dataclass as a dict without its None fields: a setting added later whose None default means
    "as before" leaves the cache key of every existing configuration unchanged."""

    def prune(value):
        if isinstance(value, dict):
            return {k: prune(v) for k, v in value.items() if v is not None}
        return value

    return prune(dataclasses.asdict(config))


def cache_key(blob: dict) -> str:
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def split_data(split: world.Split) -> RetrievalData:
    """A synthetic split as retrieval data, with the world's truth oracle for false-negative masking."""
    facts = [world.scene_facts(s) for s in split.scenes]
    caps = split.captions

    def true_of(img_idx: np.ndarray, txt_idx: np.ndarray) -> np.ndarray:
        return np.array([[caps[t].facts <= facts[i] for t in txt_idx] for i in img_idx], dtype=bool)

    return RetrievalData(split.images, split.texts, split.txt2img, true_of)


def tokenizer() -> WordTokenizer:
    return WordTokenizer(world.vocabulary())


def cache_root() -> Path:
    """``$AURORA_CACHE``, else ``$XDG_CACHE_HOME/aurora-bench``, else ``~/.cache/aurora-bench``."""
    if os.environ.get("AURORA_CACHE"):
        return Path(os.environ["AURORA_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "aurora-bench"


CHECKSUMS = "SHA256SUMS"  # written last: its presence marks a complete cache entry, its contents a sound one


def write_checksums(folder: Path) -> None:
    lines = [f"{file_sha256(f)}  {f.name}" for f in sorted(folder.iterdir()) if f.name != CHECKSUMS]
    partial = folder / f".{CHECKSUMS}.partial"
    partial.write_text("\n".join(lines) + "\n")
    partial.replace(folder / CHECKSUMS)


BUNDLED = Path(__file__).parent / "bundled"  # package data: exact cache entries of the current recipes


def bundled_entry(label: str, key: str) -> Path | None:
    """The package's copy of cache entry ``<label>/<key>``, if it ships one and ``AURORA_BUNDLED`` is not 0."""
    if os.environ.get("AURORA_BUNDLED", "1") == "0":
        return None
    folder = BUNDLED / label / key
    return folder if folder.is_dir() else None


def install_bundled(bundle: Path, folder: Path, label: str) -> bool:
    """Copy a sound bundled entry into the cache ``folder``, checksums last (as a built entry is sealed);
    -> False, saying why in one line, when the bundled copy does not match its own checksums."""
    if (why := damage(bundle)) is not None:
        print(f"aurora-bench: not using the bundled {label} backbone in {bundle}: {why}; pretraining it instead",
              file=sys.stderr, flush=True)
        return False
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(bundle, tmp)
    for f in sorted(tmp.iterdir(), key=lambda f: f.name == CHECKSUMS):
        f.replace(folder / f.name)
    tmp.rmdir()
    print(f"aurora-bench: {label} backbone {bundle.name} copied from the package's bundled copy (built by the same "
          "recipe; `nox -s verify-proxy` rebuilds and compares it)", file=sys.stderr, flush=True)
    return True


def damage(folder: Path) -> str | None:
    """Why the cache entry in ``folder`` cannot be trusted, or None when every file matches its checksum."""
    if not (folder / CHECKSUMS).is_file():
        return "it has no checksums (incomplete, or written before entries carried them)"
    for line in (folder / CHECKSUMS).read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        if not (folder / name).is_file():
            return f"{name} is missing"
        if file_sha256(folder / name) != digest:
            return f"{name} does not match its checksum"
    return None


def pretrain(cfg: PretrainConfig, progress: bool = True) -> tuple[Backbone, dict]:
    torch.manual_seed(cfg.seed)
    tok = tokenizer()
    m = cfg.model
    config = blip_config(m.hidden, m.layers, m.heads, m.mlp, m.image_size, m.patch, tok.vocab_size, m.proj,
                         init_std=m.init_std)
    model = from_config(config, seed=cfg.seed)
    backbone = Backbone(model, tok, enc_token_id=tok.enc_token_id, image_size=m.image_size, max_text_length=32,
                        source="proxy (pretrained by aurora-bench)")
    train = split_data(world.make_split(cfg.seed, cfg.n_images, cfg.captions_per_image, world.Shift()))
    temp = torch.nn.Parameter(torch.tensor(cfg.temp_init))
    start = time.perf_counter()
    stats = fit(model, RetrievalObjective(backbone, temp, cfg.loss), train, cfg.train, seed=cfg.seed,
                progress="pretraining the proxy backbone" if progress else None)
    backbone.temp = float(temp.detach().clamp(cfg.loss.temp_min, 0.5))
    # held-in evaluation: fresh scenes from the pretraining distribution
    held_in = split_data(world.make_split(cfg.seed + 1000, cfg.eval_images, 5, world.Shift()))
    metrics = evaluate(model, backbone, held_in, k_test=cfg.k_test, itc_weight=cfg.rerank_itc_weight)
    info = {"pretrain_seconds": time.perf_counter() - start, "temp": backbone.temp, **stats,
            **{f"pretrain_{k}": v for k, v in metrics.items()}}
    backbone.info = info
    return backbone, info


def load_or_pretrain(seed: int = 0, cache_dir: str | None = None, cfg: PretrainConfig | None = None,
                     progress: bool = True) -> Backbone:
    from transformers import BlipForImageTextRetrieval

    cfg = cfg or PretrainConfig(seed=seed)
    folder = Path(cache_dir).expanduser() if cache_dir else cache_root() / "proxy" / cfg.key()
    return cached_backbone(folder, "proxy", cfg, BlipForImageTextRetrieval, cfg.model.image_size,
                           lambda: pretrain(cfg, progress))


@contextlib.contextmanager
def _quiet_transformers():
    """No "Writing model shards" progress bar in the suite's output."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def cached_backbone(folder: Path, label: str, cfg, model_cls, image_size: int, build) -> Backbone:
    """Load a pretrained proxy backbone from ``folder`` (filled from the package's bundled copy of the same key
    where the cache has none), or ``build()`` -> (backbone, info) and cache it.

    The entry is written to a temporary folder, moved in, and sealed with checksums written last. An entry
    that is incomplete or whose files do not match their checksums is rebuilt, saying why in one line.
    """
    from aurora.api import mark_backbone

    if folder.exists() and (why := damage(folder)) is not None:
        print(f"aurora-bench: rebuilding the cached {label} backbone in {folder}: {why}", file=sys.stderr, flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    if not folder.exists() and (bundle := bundled_entry(label, cfg.key())) is not None:
        install_bundled(bundle, folder, label)
    if folder.exists():
        info = json.loads((folder / "info.json").read_text())
        model = mark_backbone(from_pretrained(folder, model_cls))
        tok = WordTokenizer.from_dict(info["tokenizer"])
        return Backbone(model, tok, enc_token_id=tok.enc_token_id, image_size=image_size,
                        temp=info["temp"], max_text_length=32, source=f"{label} {cfg.key()} (cached)", info=info)
    backbone, info = build()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    with _quiet_transformers():
        backbone.model.save_pretrained(tmp)
    (tmp / "info.json").write_text(json.dumps({**info, "config": dataclasses.asdict(cfg),
                                               "tokenizer": backbone.tokenizer.to_dict()}, indent=1))
    for f in tmp.iterdir():
        f.replace(folder / f.name)
    tmp.rmdir()
    write_checksums(folder)
    backbone.source = f"{label} {cfg.key()}"
    mark_backbone(backbone.model)
    return backbone