"""Pure metric functions (numpy in, floats out)."""

from __future__ import annotations

import re

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


def retrieval_recall(
    sims: np.ndarray, txt2img: np.ndarray, sims_t2i: np.ndarray | None = None, median_rank: bool = False
) -> dict:
    """Image-text retrieval recall as BLIP reports it, in percent.

    sims: (n_images, n_texts) scores; txt2img: (n_texts,) image index of each text. Image->text (``txt_r*``)
    takes the best-ranked of the image's captions; text->image (``img_r*``) the rank of the one true image.
    ``sims_t2i`` scores the text->image direction when it differs (ITM re-ranking scores each direction's
    top-k separately); by default ``sims`` serves both.
    ``median_rank`` adds ``txt_r_mdr`` and ``img_r_mdr``: the median 1-based rank of the truth (lower is
    better), which video retrieval reports beside recall.
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
    if median_rank:
        out["txt_r_mdr"] = float(np.median(txt_ranks)) + 1
        out["img_r_mdr"] = float(np.median(img_ranks)) + 1
    return out


# ---------------------------------------------------------------- VQA accuracy (official VQA evaluation)

# Characters the official scorer deletes (or turns into spaces); the apostrophe is kept for contractions.
_VQA_PUNCT = tuple(";/[]\"{}()=+\\_-><@`,?!")
_PERIOD = re.compile(r"\.(?!\d)")  # a period not followed by a digit ("2.5" keeps its point)
_DIGIT_COMMA = re.compile(r"\d,\d")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"))}
_NUMBER_WORDS["none"] = "0"
_ARTICLES = frozenset(("a", "an", "the"))
# Contractions the official scorer restores when an answer drops the apostrophe(s). Forms that collide with
# ordinary words once the apostrophe goes (we'll/well, it's/its, i'd/id, she'll/shell) are absent there too.
_CONTRACTED = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd "
    "he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've might've mustn't must've "
    "needn't not've o'clock oughtn't 'ow's'at shan't she'd she'd've she's should've shouldn't shouldn't've "
    "somebody'd somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's something'd "
    "something'd've something'll that's there'd there'd've there're there's they'd they'd've they'll they're "
    "they've 'twas wasn't we'd've we've weren't what'll what're what's what've when's where'd where's where've "
    "who'd who'd've who'll who's who've why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll "
    "y'all'd've you'd you'd've you'll you're you've"
).split()


def _apostrophe_variants(word: str) -> list[str]:
    """Every spelling of ``word`` with at least one of its apostrophes dropped ("couldn't've" -> "couldntve",
    "couldnt've", "couldn'tve")."""
    spots = [i for i, ch in enumerate(word) if ch == "'"]
    variants = []
    for keep in range(2 ** len(spots) - 1):  # bit mask of apostrophes kept; all kept is the word itself
        variants.append("".join(ch for i, ch in enumerate(word)
                                if ch != "'" or keep >> spots.index(i) & 1))
    return variants


_CONTRACTIONS = {v: w for w in _CONTRACTED for v in _apostrophe_variants(w)}


def vqa_punctuation(text: str) -> str:
    """The official scorer's punctuation step: a mark next to a space (or any mark, when the text holds a
    digit-comma-digit number) is deleted, otherwise it becomes a space; periods not before a digit go."""
    delete = _DIGIT_COMMA.search(text) is not None
    out = text
    for p in _VQA_PUNCT:  # the tests read the original text, not the partly cleaned one
        out = out.replace(p, "" if delete or f"{p} " in text or f" {p}" in text else " ")
    return _PERIOD.sub("", out)


def vqa_normalize(text: str) -> str:
    """Full normalisation of a predicted answer: whitespace, punctuation, lowercase, number words to digits,
    articles dropped, apostrophe-less contractions restored."""
    text = vqa_punctuation(text.replace("\n", " ").replace("\t", " ").strip())
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """Official VQA accuracy (0-1) of one prediction against the annotators' answers (usually 10).

    min(#matching / 3, 1), averaged over the leave-one-out subsets of the answers: with 10 answers, 1 match
    scores 0.3, 2 score 0.6, 3 score 0.9, and 4 or more score 1. As the official scorer does, the prediction
    is fully normalised and the answers only get the punctuation step, and only when they disagree (the
    official annotations are already normalised).
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one ground-truth answer")
    pred = vqa_normalize(prediction)
    truth = [a.replace("\n", " ").replace("\t", " ").strip() for a in answers]
    if len(set(truth)) > 1:
        truth = [vqa_punctuation(a) for a in truth]
    matches = sum(a == pred for a in truth)
    # Leaving out a matching answer leaves matches - 1 of them, leaving out any other leaves all of them.
    scores = [min(1.0, (matches - (a == pred)) / 3) for a in truth]
    return sum(scores) / len(scores)
