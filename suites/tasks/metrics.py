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


def _ranks_by_argsort(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Best (0-based) position of a true candidate in ``np.argsort(row)[::-1]``, per query row: BLIP's
    ``itm_eval``. numpy's default sort is not stable, so how tied candidates are ordered is numpy's (its build
    and the CPU's SIMD sort), exactly as in BLIP; rows are sorted in the dtype given (BLIP's: float32).

    scores: (Q, C) higher is better; truth: (Q, C) bool. Rows go in blocks: COCO's 5k x 25k would otherwise
    hold gigabytes of int64 positions at once.
    """
    n_queries, n_candidates = scores.shape
    ranks = np.empty(n_queries, dtype=np.int64)
    for start in range(0, n_queries, 1024):
        rows = slice(start, start + 1024)
        order = np.argsort(scores[rows], axis=1)[:, ::-1]  # (q, C) candidates, best first (each row on its own)
        position = np.empty_like(order)
        np.put_along_axis(position, order, np.broadcast_to(np.arange(n_candidates), order.shape), axis=1)
        ranks[rows] = np.where(truth[rows], position, n_candidates).min(axis=1)
    return ranks


# How ``retrieval_recall`` ranks candidates that score the same as the truth.
TIES = {"pessimistic": _ranks_of_truth, "argsort": _ranks_by_argsort}


def retrieval_recall(
    sims: np.ndarray, txt2img: np.ndarray, sims_t2i: np.ndarray | None = None, median_rank: bool = False,
    ties: str = "pessimistic",
) -> dict:
    """Image-text retrieval recall as BLIP reports it, in percent.

    sims: (n_images, n_texts) scores; txt2img: (n_texts,) image index of each text. Image->text (``txt_r*``)
    takes the best-ranked of the image's captions; text->image (``img_r*``) the rank of the one true image.
    ``sims_t2i`` scores the text->image direction when it differs (ITM re-ranking scores each direction's
    top-k separately); by default ``sims`` serves both.
    ``median_rank`` adds ``txt_r_mdr`` and ``img_r_mdr``: the median 1-based rank of the truth (lower is
    better), which video retrieval reports beside recall.
    ``ties``: "pessimistic" counts candidates tied with the truth as ranked above it; "argsort" takes the order
    BLIP's ``itm_eval`` reads off ``np.argsort(row)[::-1]`` (the scores keep their dtype: numpy's tie order
    may depend on it).
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {list(TIES)}, got {ties!r}")
    sims = np.asarray(sims)
    txt2img = np.asarray(txt2img)
    n_images, n_texts = sims.shape
    if txt2img.shape != (n_texts,):
        raise ValueError(f"txt2img has shape {txt2img.shape}; expected ({n_texts},) for sims {sims.shape}")
    t2i = sims if sims_t2i is None else np.asarray(sims_t2i)
    truth = txt2img[None, :] == np.arange(n_images)[:, None]  # (n_images, n_texts)
    rank_of_truth = TIES[ties]
    txt_ranks = rank_of_truth(sims, truth)  # per image
    img_ranks = rank_of_truth(t2i.T, truth.T)  # per text
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


# ---------------------------------------------------------------- VQA accuracy (the official VQA evaluation)
#
# Two scorers, picked by name:
#   "official": the current official VQA API, GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py
#     (last changed by commit a013f00, "Fixed processing answers bug", 2021). Its contraction dictionary is
#     transcribed below as it stands there.
#   "lavis": the older official scorer that LAVIS (lavis/common/vqa_tools/vqa_eval.py) copies, exactly as this
#     module implemented it before: the prediction always fully normalised, the answers given only the
#     punctuation step. It is not LAVIS to the letter: its contraction map is generated from a word list (so
#     "shed" becomes "she'd"), it strips whitespace off the answers (LAVIS strips only the prediction), and it
#     removes every period (LAVIS, like the official code, at most 32).

VQA_SCORERS = ("official", "lavis")

# Characters the scorers delete (or turn into spaces); the apostrophe is kept for contractions.
_VQA_PUNCT = tuple(";/[]\"{}()=+\\_-><@`,?!")
# A period not followed by a digit ("2.5" keeps its point). The official pattern is "(?!<=\d)(\.)(?!\d)": its
# "(?!<=\d)" is a lookahead (a mistyped lookbehind) that always holds before a period, so this is the same.
_PERIOD = re.compile(r"\.(?!\d)")
# The official code calls periodStrip.sub("", outText, re.UNICODE): the flag lands in ``count``, so at most
# re.UNICODE (32) periods go.
_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)
_DIGIT_COMMA = re.compile(r"\d,\d")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"))}
_NUMBER_WORDS["none"] = "0"
_ARTICLES = frozenset(("a", "an", "the"))

# The official ``contractions`` dictionary, transcribed exactly from GT-Vision-Lab/VQA
# PythonEvaluationTools/vqaEvaluation/vqaEval.py (VQAEval.__init__). Its quirks are kept: capitalised keys
# ("Im", "Ive", "Id've") never match the lowercased words, "somebody'd" maps backwards to "somebodyd", and
# forms such as "shed", "wed", "id", "hell", "well", "its", "lets" are not keys, so they stay as they are.
_OFFICIAL_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll",
    "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll",
    "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}

# The "lavis" scorer's generated map: every apostrophe-dropped spelling of these words restores the word.
# Forms that collide with ordinary words once the apostrophe goes (we'll/well, it's/its, i'd/id, she'll/shell)
# are left out, but "she'd" is in, so "shed" becomes "she'd".
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


_LAVIS_CONTRACTIONS = {v: w for w in _CONTRACTED for v in _apostrophe_variants(w)}
_CONTRACTION_MAPS = {"official": _OFFICIAL_CONTRACTIONS, "lavis": _LAVIS_CONTRACTIONS}


def _check_scorer(scorer: str) -> None:
    if scorer not in VQA_SCORERS:
        raise ValueError(f"VQA scorer must be one of {VQA_SCORERS}, got {scorer!r}")


def _strip_whitespace(text: str) -> str:
    """Both scorers' first step, for predictions and answers: newlines and tabs to spaces, ends stripped."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_punctuation(text: str, scorer: str = "official") -> str:
    """``processPunctuation``: a mark next to a space (or any mark, when the text holds a digit-comma-digit
    number) is deleted, otherwise it becomes a space; then periods not before a digit go (the official code:
    at most 32 of them)."""
    _check_scorer(scorer)
    delete = _DIGIT_COMMA.search(text) is not None
    out = text
    for p in _VQA_PUNCT:  # the tests read the original text, not the partly cleaned one
        out = out.replace(p, "" if delete or f"{p} " in text or f" {p}" in text else " ")
    return _PERIOD.sub("", out, count=_OFFICIAL_PERIOD_COUNT if scorer == "official" else 0)


def vqa_digit_article(text: str, scorer: str = "official") -> str:
    """``processDigitArticle``: lowercase, split on whitespace, number words to digits, articles dropped,
    apostrophe-less contractions restored with the scorer's map, words joined by single spaces."""
    _check_scorer(scorer)
    contractions = _CONTRACTION_MAPS[scorer]
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(contractions.get(w, w) for w in words if w not in _ARTICLES)


def vqa_normalize(text: str, scorer: str = "official") -> str:
    """Full normalisation of an answer: whitespace, punctuation, then ``vqa_digit_article``. (The "official"
    scorer applies it only to questions whose answers disagree; see ``vqa_accuracy``.)"""
    return vqa_digit_article(vqa_punctuation(_strip_whitespace(text), scorer), scorer)


def vqa_accuracy(prediction: str, answers: list[str], scorer: str = "official") -> float:
    """VQA accuracy (0-1) of one prediction against the annotators' answers (usually 10).

    For each answer, min(1, #matches among the other answers / 3), averaged over the answers: with 10 answers,
    1 match scores 0.3, 2 score 0.6, 3 score 0.9, and 4 or more score 1. Every answer and the prediction are
    first whitespace-stripped. Then:

    - "official" (the current VQA API): if the stripped answers are not all the same, the answers and the
      prediction are all fully normalised (``vqa_normalize``); if they are all the same, nothing more is
      done to either, and the prediction must equal the answer as it is.
    - "lavis" (the older scorer LAVIS copies): the prediction is always fully normalised, with the generated
      contraction map; the answers get only the punctuation step, and only if they are not all the same.
    """
    _check_scorer(scorer)
    if not answers:
        raise ValueError("vqa_accuracy needs at least one ground-truth answer")
    pred = _strip_whitespace(prediction)
    truth = [_strip_whitespace(a) for a in answers]
    disagree = len(set(truth)) > 1
    if scorer == "official":
        if disagree:
            truth = [vqa_digit_article(vqa_punctuation(a, scorer), scorer) for a in truth]
            pred = vqa_digit_article(vqa_punctuation(pred, scorer), scorer)
    else:
        pred = vqa_digit_article(vqa_punctuation(pred, scorer), scorer)
        if disagree:
            truth = [vqa_punctuation(a, scorer) for a in truth]
    # The official code leaves out one answer record at a time (records differ by answer_id): leaving out a
    # matching answer leaves matches - 1 of them, leaving out any other leaves all of them.
    matches = sum(a == pred for a in truth)
    scores = [min(1.0, (matches - (a == pred)) / 3) for a in truth]
    return sum(scores) / len(scores)
