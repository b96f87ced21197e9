"""Pure metric functions (numpy in, floats out)."""

from __future__ import annotations

import numpy as np

RECALL_KS = (1, 5, 10)


def _ranks_of_truth(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Best (0-based) rank any true candidate reaches, per query row.

    scores: (Q, C) higher is better; truth: (Q, C) bool. Ties count against the truth (pessimistic), so a
    constant score matrix does not score perfectly.
    """
    best_true = np.where(truth, scores, -np.inf).max(axis=1, keepdims=True)  # (Q, 1)
    beaten = (scores >= best_true) & ~truth  # candidates that are not true yet score at least as high
    return beaten.sum(axis=1)


def retrieval_recall(sims: np.ndarray, txt2img: np.ndarray, sims_t2i: np.ndarray | None = None) -> dict:
    """Image-text retrieval recall as BLIP reports it, in percent.

    sims: (n_images, n_texts) scores; txt2img: (n_texts,) image index of each text. Image->text (``txt_r*``)
    takes the best-ranked of the image's captions; text->image (``img_r*``) the rank of the one true image.
    ``sims_t2i`` scores the text->image direction when it differs (ITM re-ranking scores each direction's
    top-k separately); by default ``sims`` serves both.
    """
    sims = np.asarray(sims, dtype=np.float64)
    txt2img = np.asarray(txt2img)
    n_images, n_texts = sims.shape
    if txt2img.shape != (n_texts,):
        raise ValueError(f"txt2img has shape {txt2img.shape}; expected ({n_texts},) for sims {sims.shape}")
    t2i = sims if sims_t2i is None else np.asarray(sims_t2i, dtype=np.float64)
    truth = txt2img[None, :] == np.arange(n_images)[:, None]  # (n_images, n_texts)
    txt_ranks = _ranks_of_truth(sims, truth)  # per image
    img_ranks = _ranks_of_truth(t2i.T, truth.T)  # per text
    out = {}
    for k in RECALL_KS:
        out[f"txt_r{k}"] = 100.0 * float(np.mean(txt_ranks < k))
    for k in RECALL_KS:
        out[f"img_r{k}"] = 100.0 * float(np.mean(img_ranks < k))
    out["r_mean"] = float(np.mean([out[f"{d}_r{k}"] for d in ("txt", "img") for k in RECALL_KS]))
    return out
