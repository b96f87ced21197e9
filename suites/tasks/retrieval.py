"""Image-text and video-text retrieval on BLIP: data containers, ITC + ITM losses, BLIP's two-stage evaluation.

Shapes: B batch, L text length, N image tokens, d hidden, e projection width, T frames per clip.

Video on an unchanged BLIP: every frame goes through the same ViT, the ITC feature pools the frames, and ITM
cross-attends to all frames' tokens at once (``suites.tasks.passes``): frame order is invisible to the model.

The task's settings (``LossSettings``, the re-ranking depth and score) belong to the benchmark, the same for
every method.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aurora import arch
from suites.engine import distributed
from suites.engine.ema import MomentumTensors
from suites.engine.loop import Objective, index_batches
from suites.tasks.metrics import retrieval_recall
from suites.tasks.passes import by_length, frame_tokens, image_grounded, side_by_side
from suites.tasks.transforms import augmented
from suites.tasks.video import frame_indices, sample_frames

# The named method hook retrieval's objective calls (``Method.task_hooks``):
#   "itm_features"(fused_cls (P, d), text_cls (B, d), n_pos) -> (P, d): the training ITM [CLS] states before the
#   ITM head; the first n_pos rows are positive pairs, text_cls the batch's unimodal caption [CLS] states.
ITM_FEATURES = "itm_features"


class ImageError(ValueError):
    """An image file that is missing or cannot be decoded; the message names the file."""


def read_image(path: str):
    """The PIL image of ``path``, decoded now: a truncated or damaged file fails here, naming the file (also from
    a ``DataLoader`` worker, whose error keeps this message), not later inside a transform with no path."""
    from PIL import Image

    try:
        image = Image.open(path)
        image.load()  # PIL opens lazily: decode the whole file (and close it) while its path is known
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"cannot read image {path} ({err}); replace the file (truncated or damaged?)") from None
    return image


@dataclass
class RetrievalData:
    """Images with their captions as one flat list; ``txt2img[t]`` is the image of caption t.

    images: uint8 (n, H, W, 3) array, or a list of image file paths (real tier, loaded lazily).
    true_of: optional oracle (image indices, text indices) -> bool matrix, "caption j is true of image i";
    where missing, only an image's own captions count as true (the real datasets give nothing more).
    augment: training images go through BLIP's training transform (random resized crop, flip, RandAugment).
    """

    images: np.ndarray | Sequence[str]
    texts: list[str]
    txt2img: np.ndarray
    true_of: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    augment: bool = False

    def __post_init__(self):
        self.txt2img = np.asarray(self.txt2img, dtype=np.int64)
        if len(self.texts) != len(self.txt2img):
            raise ValueError(f"{len(self.texts)} texts but {len(self.txt2img)} txt2img entries")

    @property
    def n_images(self) -> int:
        return len(self.images)

    def image_batch(self, idx: np.ndarray, rng: np.random.Generator | None = None):
        """The images of ``idx``: a uint8 array, or PIL images read from their files."""
        if isinstance(self.images, np.ndarray):
            return self.images[idx]
        return [read_image(self.images[i]) for i in idx]

    def truth(self, img_idx: np.ndarray, txt_idx: np.ndarray) -> np.ndarray:
        """(len(img_idx), len(txt_idx)) bool: caption is true of image (its own image at least)."""
        own = self.txt2img[txt_idx][None, :] == np.asarray(img_idx)[:, None]
        return own if self.true_of is None else own | self.true_of(img_idx, txt_idx)

    @property
    def frames_per_item(self) -> int:
        return 1


@dataclass
class VideoRetrievalData(RetrievalData):
    """Clips in place of images: ``images`` holds uint8 (n, T', H, W, 3) clips or video file paths.

    Each batch samples ``n_frames`` frames per clip: ``"uniform"`` (evaluation: the same frames every time)
    or ``"random"`` (training: one random frame per equal segment, a new draw every batch).
    """

    n_frames: int = 8
    frame_mode: str = "uniform"

    @property
    def frames_per_item(self) -> int:
        return self.n_frames

    def image_batch(self, idx: np.ndarray, rng: np.random.Generator | None = None):
        """-> uint8 (B, T, H, W, 3) for stored clips, a list of B (T, H, W, 3) arrays for video files. "random"
        frames are drawn with ``rng`` (the training loader's per-batch generator): the data object, cached
        and shared between trials, holds no sampling state."""
        if isinstance(self.images, np.ndarray):
            return np.stack([self.images[i][frame_indices(len(self.images[i]), self.n_frames, self.frame_mode, rng)]
                             for i in idx])
        return [sample_frames(self.images[i], self.n_frames, self.frame_mode, rng) for i in idx]


ITM_NEGATIVES = ("hard", "random", "mixed")


@dataclass
class MomentumSettings:
    """BLIP's momentum distillation: ITC contrasts the online features with a momentum model's (an exponential
    average of the trained tensors) and a queue of its past features, against targets that mix the momentum
    model's own similarities (weight ``alpha``, ramped up over the first epoch) with the true pairs."""

    decay: float = 0.995
    queue_size: int = 57600
    alpha: float = 0.4

    def __post_init__(self):
        if isinstance(self.decay, bool) or not isinstance(self.decay, (int, float)) or not 0 <= self.decay < 1:
            raise ValueError(f"loss.momentum.decay must be a number in [0, 1), got {self.decay!r}")
        if isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int) or self.queue_size < 0:
            raise ValueError(f"loss.momentum.queue_size must be a whole number >= 0, got {self.queue_size!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha <= 1:
            raise ValueError(f"loss.momentum.alpha must be a number in [0, 1], got {self.alpha!r}")


@dataclass
class LossSettings:
    """ITC/ITM training choices, the same for every method (documented in the README)."""

    itm_weight: float = 1.0
    # How ITM negatives are drawn: "hard" (softmax over ITC similarity, as BLIP), "random" (uniform) or
    # "mixed" (each negative hard or random with equal chance). Captions true of the anchor are never negatives.
    itm_negatives: str = "mixed"
    temp_min: float = 0.03  # floor for the ITC temperature: a near-zero temperature makes hard negatives degenerate
    # ITM anchors per batch (0 = every pair, as BLIP): each anchor adds a positive and two negatives, and the
    # image-grounded pass over them dominates the step time on a CPU.
    itm_anchors: int = 0
    # ITC with momentum distillation, as BLIP and Aurora fine-tune retrieval (None: off, ITC within the global
    # batch); ``{}`` or ``true`` turns it on with BLIP's settings.
    momentum: MomentumSettings | None = None

    def __post_init__(self):
        if self.itm_negatives not in ITM_NEGATIVES:
            raise ValueError(f"loss.itm_negatives must be one of {', '.join(ITM_NEGATIVES)}; got {self.itm_negatives!r}")
        for name, low in (("itm_weight", 0.0), ("temp_min", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < float("inf"):
                raise ValueError(f"loss.{name} must be a finite number >= {low:g}, got {value!r}")
        if isinstance(self.itm_anchors, bool) or not isinstance(self.itm_anchors, int) or self.itm_anchors < 0:
            raise ValueError(f"loss.itm_anchors must be a whole number >= 0, got {self.itm_anchors!r}")
        if self.momentum is True or isinstance(self.momentum, dict):  # from a YAML spec
            self.momentum = MomentumSettings(**({} if self.momentum is True else self.momentum))
        elif self.momentum is False:
            self.momentum = None
        if self.momentum is not None and not isinstance(self.momentum, MomentumSettings):
            raise ValueError(f"loss.momentum must be a mapping of {sorted(MomentumSettings.__dataclass_fields__)}, "
                             f"true or null; got {self.momentum!r}")


class RetrievalObjective(Objective):
    """BLIP's ITC + ITM on (image, caption) pairs. A batch is a set of caption indices.

    temp: the ITC temperature, fixed in fine-tuning (the backbone's), an ``nn.Parameter`` in pretraining.
    """

    def __init__(self, backbone, temp: torch.Tensor, settings: LossSettings):
        self.backbone, self.temp, self.settings = backbone, temp, settings
        self.distillation = MomentumDistillation(settings.momentum) if settings.momentum is not None else None

    def parameters(self) -> list[torch.Tensor]:
        return [self.temp]

    def begin_step(self, model, step: int, steps_per_epoch: int) -> None:
        if self.distillation is not None:
            self.distillation.begin_step(model, step, steps_per_epoch)

    def state_dict(self) -> dict:
        return self.distillation.state_dict() if self.distillation is not None else {}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        if self.distillation is not None and state:
            self.distillation.load_state_dict(state, device)

    def batches(self, data: RetrievalData, batch_size: int, rng: np.random.Generator):
        return index_batches(len(data.texts), min(batch_size, len(data.texts)), rng)

    def items(self, data: RetrievalData) -> int:
        return len(data.texts)

    def load(self, data: RetrievalData, txt_idx: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        img_idx = data.txt2img[txt_idx]
        tok = self.backbone.tokenize([data.texts[t] for t in txt_idx])
        images = data.image_batch(img_idx, rng)
        if data.augment:
            images = augmented(images, self.backbone.image_size, rng)
        return {"pixels": self.backbone.pixels(images),  # (B, 3, S, S) or (B, T, 3, S, S)
                "input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"],
                "txt_idx": torch.from_numpy(np.asarray(txt_idx, dtype=np.int64))}  # (B,)

    def losses(self, model, data: RetrievalData, batch: dict, gen, hooks=None) -> dict:
        x = {k: v.to(gen.device, non_blocking=True) for k, v in batch.items()}
        distill = None
        if self.distillation is not None:
            distill = functools.partial(self.distillation.itc, model, x["pixels"], x["input_ids"],
                                        x["attention_mask"], x["txt_idx"], data, gen=gen)
        return retrieval_losses(model, x["pixels"], x["input_ids"], x["attention_mask"],
                                pair_truth(data, x["txt_idx"], distributed.gather(x["txt_idx"], grad=False)),
                                self.temp.to(gen.device), self.backbone.enc_token_id, self.settings, gen, hooks,
                                distill)


def pair_truth(data: RetrievalData, txt_idx: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which pairs of this process's batch (captions ``txt_idx`` (B,) with their images) and the (image, caption)
    pairs ``keys`` (K,) are true: -> (B, K) bool "caption k is true of image i", and (B, K) bool "caption i is
    true of image k". Keys: the global batch (every data-parallel process's captions in rank order; K = B and
    the second the first's transpose in one process), or a feature queue, whose empty slots (-1) match nothing.
    """
    local, keys_np = txt_idx.cpu().numpy(), keys.cpu().numpy()
    filled = keys_np >= 0
    i2t = np.zeros((len(local), len(keys_np)), dtype=bool)
    t2i = np.zeros_like(i2t)
    i2t[:, filled] = data.truth(data.txt2img[local], keys_np[filled])
    t2i[:, filled] = data.truth(data.txt2img[keys_np[filled]], local).T
    return torch.from_numpy(i2t).to(txt_idx.device), torch.from_numpy(t2i).to(txt_idx.device)


class MomentumDistillation:
    """ITC as BLIP fine-tunes retrieval: the online features against a momentum model's features of the batch
    and a queue of its past ones (``MomentumSettings``). Its state (the averaged tensors, the queues) travels
    with the training state. Data-parallel processes enqueue every process's momentum features, as BLIP does."""

    def __init__(self, settings: MomentumSettings):
        self.settings = settings
        self.average = MomentumTensors(settings.decay)
        self.alpha = 0.0
        self.queue: dict[str, torch.Tensor] = {}

    def begin_step(self, model: nn.Module, step: int, steps_per_epoch: int) -> None:
        self.average.update(model)  # the first step copies the online tensors
        self.alpha = self.settings.alpha * min(1.0, step / steps_per_epoch)  # BLIP ramps alpha over epoch 1

    def state_dict(self) -> dict:
        return {"average": self.average.state_dict(), "queue": {k: v.cpu() for k, v in self.queue.items()}}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.average.load_state_dict(state["average"], device)
        self.queue = {k: v.to(device) for k, v in state["queue"].items()}

    def _queue(self, width: int, device: torch.device, gen: torch.Generator) -> dict[str, torch.Tensor]:
        if not self.queue:  # BLIP starts from random unit vectors that are true of nothing
            size = self.settings.queue_size
            self.queue = {
                "image": F.normalize(torch.randn(size, width, generator=gen, device=device), dim=1),  # (Q, e)
                "text": F.normalize(torch.randn(size, width, generator=gen, device=device), dim=1),  # (Q, e)
                "txt_idx": torch.full((size,), -1, dtype=torch.long, device=device),  # (Q,) the pairs' captions
                "ptr": torch.zeros((), dtype=torch.long, device=device),
            }
        return self.queue

    def itc(self, model, pixels, ids, mask, txt_idx, data: RetrievalData, image_feat: torch.Tensor,
            text_feat: torch.Tensor, temp: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The ITC loss of the online features (B, e) against the keys: the batch's momentum features, then the
        queue (K = B + Q); then the batch's momentum features join the queue."""
        with torch.no_grad(), self.average.swapped_in(model):
            image_feat_m = encode_images(model, pixels)[1].float()  # (B, e)
            text_feat_m = encode_texts(model, ids, mask)[1].float()  # (B, e)
        queue = self._queue(image_feat_m.shape[1], image_feat_m.device, gen)
        image_keys = torch.cat([image_feat_m, queue["image"]])  # (K, e)
        text_keys = torch.cat([text_feat_m, queue["text"]])  # (K, e)
        truth_i2t, truth_t2i = pair_truth(data, txt_idx, torch.cat([txt_idx, queue["txt_idx"]]))  # (B, K)
        with torch.no_grad():
            targets_i2t = self.alpha * F.softmax(image_feat_m @ text_keys.T / temp, dim=1) \
                + (1 - self.alpha) * _uniform_over(truth_i2t)
            targets_t2i = self.alpha * F.softmax(text_feat_m @ image_keys.T / temp, dim=1) \
                + (1 - self.alpha) * _uniform_over(truth_t2i)
        itc = 0.5 * (_cross_entropy(image_feat @ text_keys.T / temp, targets_i2t)
                     + _cross_entropy(text_feat @ image_keys.T / temp, targets_t2i))
        self._enqueue(distributed.gather(image_feat_m, grad=False), distributed.gather(text_feat_m, grad=False),
                      distributed.gather(txt_idx, grad=False))
        return itc

    @torch.no_grad()
    def _enqueue(self, image: torch.Tensor, text: torch.Tensor, txt_idx: torch.Tensor) -> None:
        """The oldest entries give way to the global batch's (a ring buffer)."""
        size = self.settings.queue_size
        if size == 0:
            return
        slots = (self.queue["ptr"] + torch.arange(len(txt_idx), device=image.device)) % size
        self.queue["image"][slots], self.queue["text"][slots], self.queue["txt_idx"][slots] = image, text, txt_idx
        self.queue["ptr"] = (self.queue["ptr"] + len(txt_idx)) % size


def encode_images(model: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, H, W) -> image tokens (B, N, d), normalised ITC features (B, e).

    Clips (B, T, 3, H, W) -> every frame's tokens side by side (B, T*N, d), and the mean of the normalised
    per-frame ITC features, normalised again (B, e).
    """
    tokens = frame_tokens(model, pixels)  # (B or B*T, N, d)
    feats = F.normalize(arch.vision_projection(model)(tokens[:, 0]), dim=-1)
    if pixels.ndim == 4:
        return tokens, feats
    b, t = pixels.shape[:2]
    # Averaging unit vectors weighs every frame alike, whatever its feature norm (Aurora averages the [CLS]
    # states before the projection instead); re-normalising keeps ITC a cosine similarity.
    clip_feat = F.normalize(feats.view(b, t, -1).mean(1), dim=-1)  # (B, e)
    return side_by_side(tokens, b), clip_feat


def encode_texts(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unimodal text pass (no cross-attention), by groups of similar length -> [CLS] state (B, d), normalised
    ITC features (B, e)."""
    encoder = arch.text_encoder(model)
    cls = by_length(lambda i, m: encoder(input_ids=i, attention_mask=m).last_hidden_state[:, 0], ids, mask)
    return cls, F.normalize(arch.text_projection(model)(cls), dim=-1)


def fused_cls(model, image_embeds, ids, mask, enc_token_id: int) -> torch.Tensor:
    """Image-grounded text pass with BLIP's [ENC] first token, by groups of similar length -> [CLS] state (P, d)."""
    return by_length(lambda i, m, v: image_grounded(model, v, i, m, enc_token_id)[:, 0], ids, mask, image_embeds)


def itm_logits(model: nn.Module, fused: torch.Tensor) -> torch.Tensor:
    """(P, d) image-grounded [CLS] states -> (P, 2) ITM logits (no match, match)."""
    return arch.itm_head(model)(fused)


def _sample_negatives(sim: torch.Tensor, allowed: torch.Tensor, mode: str, gen: torch.Generator) -> torch.Tensor:
    """One negative column per row of ``sim`` (B, B) among ``allowed`` columns; -1 where none is allowed."""
    hard = torch.softmax(sim.float(), dim=1) * allowed
    uniform = allowed.float()
    if mode == "hard":
        weights = hard
    elif mode == "random":
        weights = uniform
    elif mode == "mixed":
        pick_hard = torch.rand(sim.shape[0], 1, generator=gen, device=sim.device) < 0.5
        weights = torch.where(pick_hard, hard, uniform)
    else:
        raise ValueError(f"itm_negatives must be 'hard', 'random' or 'mixed', got {mode!r}")
    has_any = weights.sum(1) > 0
    weights = torch.where(has_any[:, None], weights + 1e-12 * allowed, torch.ones_like(weights))
    choice = torch.multinomial(weights, 1, generator=gen).squeeze(1)
    return torch.where(has_any, choice, torch.full_like(choice, -1))


def retrieval_losses(
    model: nn.Module,
    pixels: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
    truth: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    temp: torch.Tensor,
    enc_token_id: int,
    settings: LossSettings,
    gen: torch.Generator,
    hooks: dict[str, Callable] | None = None,
    distill: Callable[..., torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """BLIP's ITC + ITM for this process's B (image, caption) pairs against the global batch of G pairs (all
    data-parallel processes' batches; G = B in one process).

    truth: (B, G) bool "caption j is true of image i" and (B, G) bool "caption i is true of image j" (see
    ``batch_truth``); one (B, B) matrix in one process. True pairs are soft ITC positives and are never drawn as
    ITM negatives. ``hooks``: a method's task hooks (``ITM_FEATURES``). ``distill(image_feat=, text_feat=,
    temp=)``: ITC with momentum distillation (``MomentumDistillation.itc``) in place of ITC within the batch;
    ITM's hard negatives still come from the global batch's similarities.
    """
    truth_i2t, truth_t2i = (truth, truth.T) if isinstance(truth, torch.Tensor) else truth
    image_embeds, image_feat = encode_images(model, pixels)  # (B, N, d), (B, e)
    text_cls, text_feat = encode_texts(model, ids, mask)  # (B, d), (B, e)
    temp = temp.clamp(min=settings.temp_min, max=0.5)

    # every process's features, with gradient: each local row is contrasted with the global batch, as BLIP does
    # (with distillation these similarities only pick ITM's negatives)
    with torch.set_grad_enabled(distill is None and torch.is_grad_enabled()):
        image_feat_all, text_feat_all = distributed.gather(image_feat), distributed.gather(text_feat)  # (G, e)
        sim_i2t = image_feat @ text_feat_all.T / temp  # (B, G)
        # (B, G); in one process the same products as sim_i2t, so they are not computed twice
        sim_t2i = sim_i2t.T if image_feat_all is image_feat else (image_feat_all @ text_feat.T).T / temp
    if distill is None:
        itc = 0.5 * (_soft_cross_entropy(sim_i2t, truth_i2t) + _soft_cross_entropy(sim_t2i, truth_t2i))
    else:
        itc = distill(image_feat=image_feat, text_feat=text_feat, temp=temp)

    # ITM negatives come from the global batch too (their tokens and captions gathered, as BLIP does)
    image_embeds_all = distributed.gather(image_embeds)  # (G, N, d)
    ids_all, mask_all = distributed.gather_padded(ids), distributed.gather_padded(mask)  # (G, L_max)
    with torch.no_grad():
        neg_img = _sample_negatives(sim_t2i, ~truth_t2i, settings.itm_negatives, gen)  # per caption, in [0, G)
        neg_txt = _sample_negatives(sim_i2t, ~truth_i2t, settings.itm_negatives, gen)  # per image, in [0, G)
    n_anchor = settings.itm_anchors or len(ids)
    arange = torch.arange(min(n_anchor, len(ids)), device=ids.device)
    neg_img, neg_txt = neg_img[arange], neg_txt[arange]
    keep_i, keep_t = neg_img >= 0, neg_txt >= 0
    own = arange + distributed.world()[0] * len(ids)  # the anchors' rows in the global batch
    # pairs: the anchors' positives, then (negative image, caption), then (image, negative caption)
    img_rows = torch.cat([own, neg_img[keep_i], own[keep_t]])
    txt_rows = torch.cat([own, own[keep_i], neg_txt[keep_t]])
    visual, txt_ids, txt_mask = image_embeds_all[img_rows], ids_all[txt_rows], mask_all[txt_rows]
    fused = fused_cls(model, visual, txt_ids, txt_mask, enc_token_id)
    if ITM_FEATURES in (hooks or {}):
        fused = hooks[ITM_FEATURES](fused, text_cls, len(arange))
    logits = itm_logits(model, fused)  # (P, 2)
    labels = torch.zeros(len(visual), dtype=torch.long, device=logits.device)
    labels[: len(arange)] = 1
    itm = F.cross_entropy(logits, labels)
    return {"loss": itc + settings.itm_weight * itm, "itc_loss": itc.detach(), "itm_loss": itm.detach()}


def _soft_cross_entropy(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean over rows of the cross-entropy against the uniform distribution over each row's true columns."""
    return _cross_entropy(logits, _uniform_over(truth))


def _uniform_over(truth: torch.Tensor) -> torch.Tensor:
    """(B, K) bool -> each row's uniform distribution over its true columns."""
    return truth.float() / truth.float().sum(1, keepdim=True)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of the cross-entropy of softmax(logits) against the distributions ``targets`` (B, K)."""
    return -(F.log_softmax(logits, dim=1) * targets).sum(1).mean()


# Image tokens per ITM forward pass: the re-ranking chunk holds this many (pairs x frames x tokens per frame),
# at most 1,024 pairs. BLIP-base at 384 px: 577 tokens per image, 908 pairs; with 8 frames, 113 clips.
ITM_TOKENS_PER_CHUNK = 2**19


def token_store(device: torch.device) -> tuple[torch.device, torch.dtype | None]:
    """Where a split's image tokens wait for re-ranking: host memory when computing on a GPU (5k COCO images at
    384 px are 9 GB in fp32), in the autocast dtype the cross-attention reads them in; else where they are."""
    if device.type != "cuda":
        return device, None
    return torch.device("cpu"), (torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None)


@torch.no_grad()
def embed_split(model, backbone, data: RetrievalData, batch_size: int = 256):
    """-> image tokens (n_img, N, d), image feats (n_img, e), text ids, masks, text feats (n_txt, e)."""
    device = next(model.parameters()).device
    store, dtype = token_store(device)
    embeds, img_feats, txt_feats = [], [], []
    step = max(1, batch_size // data.frames_per_item)  # the same number of frames per ViT pass for clips
    for start in range(0, data.n_images, step):
        idx = np.arange(start, min(start + step, data.n_images))
        e, f = encode_images(model, backbone.pixels(data.image_batch(idx)).to(device))
        embeds.append(e.to(store, dtype or e.dtype))
        img_feats.append(f.float())
    tok = backbone.tokenize(data.texts)
    ids, mask = tok["input_ids"].to(device), tok["attention_mask"].to(device)
    for start in range(0, len(data.texts), batch_size):
        sl = slice(start, start + batch_size)
        txt_feats.append(encode_texts(model, ids[sl], mask[sl])[1].float())
    return torch.cat(embeds), torch.cat(img_feats), ids, mask, torch.cat(txt_feats)


@torch.no_grad()
def _itm_scores(model, image_embeds, ids, mask, img_idx, txt_idx, enc_token_id) -> torch.Tensor:
    """ITM match logits of the (image, caption) pairs (img_idx[k], txt_idx[k]) -> (P,), in chunks sized by
    the image tokens they carry; tokens kept in host memory move to the device one chunk at a time.

    Pairs go through in order of caption length, each chunk cut to the columns its captions use: the split's
    ids are padded to its longest caption (on the proxy tier about twice the mean), and padded columns, masked
    out of every attention, change no score; cutting them only leaves float rounding to differ."""
    device = ids.device
    chunk = max(1, min(1024, ITM_TOKENS_PER_CHUNK // image_embeds.shape[1]))
    used = mask.bool()
    order = torch.argsort(used.sum(1)[txt_idx], stable=True)  # (P,)
    scores = torch.empty(len(img_idx), device=device)
    for s in range(0, len(order), chunk):
        rows = order[s : s + chunk]
        i, t = img_idx[rows.to(img_idx.device)], txt_idx[rows]
        width = int(used[t].any(0).nonzero().max()) + 1  # through the last column any caption here uses
        visual = image_embeds[i.to(image_embeds.device)].to(device, non_blocking=True)
        fused = fused_cls(model, visual, ids[t, :width], mask[t, :width], enc_token_id)
        scores[rows] = itm_logits(model, fused)[:, 1].float()
    return scores


# How a query's candidates past its ITC top-k are ordered after ITM re-ranking (``evaluate``).
PAST_TOPK = ("itc", "tied")
BLIP_UNSCORED = -100.0  # BLIP's fill of its score matrices: every candidate ITM did not score


@torch.no_grad()
def evaluate(
    model: nn.Module, backbone, data: RetrievalData, k_test: int = 16, itm: bool = True,
    itc_weight: float | None = None, past_topk: str = "itc",
) -> dict:
    """ITC-only recall, and BLIP's protocol: the ITC top-k of each query re-ranked by
    ITM logit + ``itc_weight`` * ITC cosine. BLIP: 1 (Aurora: 1 for video, 0 for images); None: 1 /
    ``backbone.temp``, the ITC logit at the backbone's temperature.

    Returns ``itc_<metric>`` and (with ``itm``) ``itm_<metric>`` for every key of ``retrieval_recall``; video
    data adds the median ranks (``*_r_mdr``). Candidates past a query's top-k rank below the re-ranked ones,
    ordered by ``past_topk`` (see ``past_top_k_scores``): "itc" continues ITC's order, "tied" is BLIP's (tied
    at -100, in numpy's argsort order). Recall at K <= k_test is the same either way.

    Data-parallel processes (a trial on several GPUs) each embed the whole split and ITM-score a share of the
    pairs, and all of them return the same metrics.
    """
    if past_topk not in PAST_TOPK:
        raise ValueError(f"past_topk must be one of {list(PAST_TOPK)}, got {past_topk!r}")
    was_training = model.training
    model.eval()
    embeds, img_feat, ids, mask, txt_feat = embed_split(model, backbone, data)
    with torch.autocast(img_feat.device.type, enabled=False):  # ranks from fp32 cosines whatever the precision
        sims = (img_feat @ txt_feat.T).cpu().numpy()  # (n_img, n_txt)
    video = isinstance(data, VideoRetrievalData)
    out = {f"itc_{k}": v for k, v in retrieval_recall(sims, data.txt2img, median_rank=video).items()}
    if itm:
        n_img, n_txt = sims.shape
        sims_t = torch.from_numpy(sims)
        # each image's top-k captions (image -> text) and each caption's top-k images (text -> image)
        need_i2t = torch.zeros_like(sims_t, dtype=torch.bool)
        need_i2t.scatter_(1, sims_t.topk(min(k_test, n_txt), dim=1).indices, True)
        need_t2i = torch.zeros_like(sims_t, dtype=torch.bool)
        need_t2i.scatter_(0, sims_t.topk(min(k_test, n_img), dim=0).indices, True)
        # the two candidate sets overlap heavily: score each (image, caption) pair once
        img_idx, txt_idx = (need_i2t | need_t2i).nonzero(as_tuple=True)
        rerank = torch.zeros_like(sims_t, dtype=torch.float64)
        mine = distributed.part(len(img_idx))  # data-parallel processes score a share of the pairs each
        itm_logit = distributed.gather_parts(_itm_scores(model, embeds, ids, mask, img_idx[mine],
                                                         txt_idx[mine].to(ids.device), backbone.enc_token_id)).cpu()
        itc_weight = 1.0 / backbone.temp if itc_weight is None else itc_weight
        rerank[img_idx, txt_idx] = (itm_logit + itc_weight * sims_t[img_idx, txt_idx]).double()
        i2t, t2i = (past_top_k_scores(rerank, need, sims_t, past_topk) for need in (need_i2t, need_t2i))
        itm_metrics = retrieval_recall(i2t, data.txt2img, sims_t2i=t2i, median_rank=video,
                                       ties="argsort" if past_topk == "tied" else "pessimistic")
        out.update({f"itm_{k}": v for k, v in itm_metrics.items()})
    model.train(was_training)
    return out


def past_top_k_scores(rerank: torch.Tensor, scored: torch.Tensor, sims: torch.Tensor, past_topk: str) -> np.ndarray:
    """One direction's (n_img, n_txt) score matrix after re-ranking: ``rerank`` where ``scored`` (each query's
    ITC top-k in that direction), and past the top-k

    - "itc": ITC's cosines, shifted under every re-ranked score whatever the weights' scale, so ranks past k
      (R@K for K > k_test, the median rank) follow ITC;
    - "tied": BLIP's -100 (float32, as BLIP's matrix), so ``retrieval_recall(..., ties="argsort")`` ranks them
      as BLIP's ``itm_eval`` does: by position in ``np.argsort(row)[::-1]``, numpy's unstable sort deciding
      the order among the tied candidates (neither ITC's nor index order). Every rank stays defined.

    rerank: (n_img, n_txt) float64, ITM logit + w * ITC cosine where scored; sims: (n_img, n_txt) ITC cosines.
    """
    if past_topk == "tied":
        return torch.where(scored, rerank, BLIP_UNSCORED).float().numpy()
    below = sims.double() - sims.max() + rerank[scored].min() - 1
    return torch.where(scored, rerank, below).numpy()
