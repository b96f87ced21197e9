"""(Video) question answering on BLIP's ``BlipForQuestionAnswering``, as BLIP's ``blip_vqa`` does it.

The question encoder (``text_encoder``, first token replaced by [ENC]) cross-attends to the image tokens; for
a video, to the tokens of every frame side by side. The answer decoder (``text_decoder``, answers start with
[DEC]) cross-attends to the question states. Training minimises the weighted answer likelihood,
sum_answers w * LM / B; inference ranks a candidate answer list (VQAv2: first-token top-k, then the full
likelihood) or generates greedily with a KV cache (MSRVTT-QA).

Shapes: B questions, T frames, N tokens per frame, L question length, A answers, C candidates, d hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aurora import arch
from suites.engine import distributed
from suites.engine.loop import Objective, index_batches
from suites.tasks.metrics import vqa_accuracy
from suites.tasks.passes import image_grounded, visual_tokens
from suites.tasks.transforms import augmented

SCORINGS = ("vqa", "exact")


@dataclass
class VQAData:
    """Questions about images or videos, with their training targets and the answers they are scored against.

    visuals: uint8 images (n, H, W, 3), uint8 clips (n, T, H, W, 3), or file paths read by ``load_visual``
      (default: images opened with PIL).
    visual_idx: (Q,) the visual each question is about.
    targets: per question, the distinct answers to train on and their weights (VQAv2: the annotators'
      answer frequencies; MSRVTT-QA: its one answer, weight 0.05). Empty where a split has no answers.
    answers: per question, what a prediction is scored against (all annotators' answers, duplicates kept).
    answer_list: candidate answers ranked at inference (VQAv2); ``None`` generates answers instead.
    scoring: "vqa" (official VQA accuracy) or "exact" (exact string match, as MSRVTT-QA is scored).
    load_visual: (path, train, rng) -> uint8 (H, W, 3) image or (T, H, W, 3) clip, for path visuals.
    kinds: optional question type per question, reported as ``accuracy_<kind>``.
    augment: training images go through BLIP's training transform (random resized crop, flip, RandAugment).
    """

    visuals: np.ndarray | Sequence[str]
    questions: list[str]
    visual_idx: np.ndarray
    targets: list[tuple[list[str], list[float]]]
    answers: list[list[str]]
    question_ids: list
    answer_list: list[str] | None = None
    scoring: str = "vqa"
    load_visual: Callable[[str, bool, np.random.Generator | None], np.ndarray] | None = None
    kinds: list[str] | None = None
    augment: bool = False

    def __post_init__(self):
        self.visual_idx = np.asarray(self.visual_idx, dtype=np.int64)
        n = len(self.questions)
        for name in ("visual_idx", "answers", "question_ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{n} questions but {len(getattr(self, name))} {name}")
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {self.scoring!r}")

    def visual_batch(self, idx: np.ndarray, train: bool = False, rng: np.random.Generator | None = None):
        """The visuals of questions ``idx``: an array, or a list of PIL images / frame arrays."""
        which = self.visual_idx[idx]
        if isinstance(self.visuals, np.ndarray):
            return self.visuals[which]
        if self.load_visual is not None:
            return [self.load_visual(self.visuals[i], train, rng) for i in which]
        from PIL import Image

        return [Image.open(self.visuals[i]) for i in which]


def answer_weights(answers: list[str]) -> tuple[list[str], list[float]]:
    """BLIP's VQA targets: each distinct answer (first-seen order) weighted by its share of the answers."""
    unique = list(dict.fromkeys(answers))
    return unique, [answers.count(a) / len(answers) for a in unique]


# ---------------------------------------------------------------- the model's passes


def special_ids(backbone) -> tuple[int, int]:
    """-> ([DEC] id that starts every answer, [SEP] id that ends it).

    The tokenizer's own [DEC] if it has one (proxy), else the checkpoint's decoder start token (BLIP: bos =
    [DEC]); a random-weight test backbone has neither and starts answers with its [CLS].
    """
    first_and_last = backbone.tokenize(["yes"])["input_ids"][0]
    dec = getattr(backbone.tokenizer, "dec_token_id", None)
    if dec is None:
        dec = backbone.model.config.text_config.bos_token_id
    return int(first_and_last[0] if dec is None else dec), int(first_and_last[-1])


def encode_questions(model: nn.Module, backbone, visual: torch.Tensor, questions: Sequence[str]):
    """Question states grounded in the visual tokens (B, N', d) -> (B, L, d) states and their (B, L) mask."""
    tok = backbone.tokenize(questions)
    ids, mask = tok["input_ids"].to(visual.device), tok["attention_mask"].to(visual.device)
    return image_grounded(model, visual, ids, mask, backbone.enc_token_id), mask


def tokenize_answers(backbone, answers: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (A, La) answer ids starting with [DEC] and ending with [SEP], and their mask."""
    tok = backbone.tokenize(answers)
    ids = tok["input_ids"].clone()
    ids[:, 0] = special_ids(backbone)[0]
    return ids, tok["attention_mask"]


def answer_log_likelihood(model, states, state_mask, ids, mask) -> torch.Tensor:
    """Sum of log p(token | earlier tokens, question) over each answer's tokens after [DEC] -> (A,).

    states/state_mask: (A, L, d)/(A, L), one question per answer; ids/mask: (A, La). Plain cross-entropy
    (no label smoothing), summed per answer as BLIP's ``reduction="none"`` does.
    """
    # use_cache=False: transformers' decoder otherwise fills a KV cache nothing reads (and runs eager attention)
    logits = arch.text_decoder(model)(input_ids=ids, attention_mask=mask, encoder_hidden_states=states,
                                encoder_attention_mask=state_mask, use_cache=False).logits  # (A, La, V)
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (A, La-1)
    return (logp * mask[:, 1:]).sum(1)


def vqa_losses(model, backbone, pixels: torch.Tensor, questions: Sequence[str],
               targets: Sequence[tuple[list[str], list[float]]]) -> dict[str, torch.Tensor]:
    """BLIP's VQA loss: -sum over every question's answers of w * log p(answer), divided by B."""
    visual = visual_tokens(model, pixels)
    states, state_mask = encode_questions(model, backbone, visual, questions)  # (B, L, d), (B, L)
    device = pixels.device
    answers = [a for ans, _ in targets for a in ans]
    weights = torch.tensor([w for _, ws in targets for w in ws], device=device)  # (A,)
    # each question's states repeated once per answer of that question
    rows = torch.repeat_interleave(torch.arange(len(targets), device=device),
                                   torch.tensor([len(ans) for ans, _ in targets], device=device))
    ids, mask = (t.to(device) for t in tokenize_answers(backbone, answers))
    log_lik = answer_log_likelihood(model, states[rows], state_mask[rows], ids, mask)  # (A,)
    loss = -(weights * log_lik).sum() / len(targets)
    return {"loss": loss, "vqa_loss": loss.detach()}


class VQAObjective(Objective):
    """BLIP's weighted answer-generation loss. A batch is a set of question indices."""

    def __init__(self, backbone):
        self.backbone = backbone

    def batches(self, data: VQAData, batch_size: int, rng: np.random.Generator):
        return index_batches(len(data.questions), min(batch_size, len(data.questions)), rng)

    def items(self, data: VQAData) -> int:
        return len(data.questions)

    def load(self, data: VQAData, idx: np.ndarray, rng: np.random.Generator) -> dict:
        # training frames (videos) are drawn, and images augmented, with the loader's per-batch generator
        visuals = data.visual_batch(idx, train=True, rng=rng)
        if data.augment:
            visuals = augmented(visuals, self.backbone.image_size, rng)
        return {"pixels": self.backbone.pixels(visuals),
                "questions": [data.questions[i] for i in idx], "targets": [data.targets[i] for i in idx]}

    def losses(self, model, data: VQAData, batch: dict, gen, hooks=None) -> dict:
        pixels = batch["pixels"].to(gen.device, non_blocking=True)
        return vqa_losses(model, self.backbone, pixels, batch["questions"], batch["targets"])


# ---------------------------------------------------------------- inference


@torch.no_grad()
def rank_answers(model, states, state_mask, cand_ids, cand_mask, k: int) -> torch.Tensor:
    """BLIP's ``rank_answer``: the k candidates whose first token is likeliest after [DEC], re-ranked by
    their full likelihood -> (B,) candidate indices. cand_ids/cand_mask: (C, La), starting with [DEC]."""
    b, k = states.shape[0], min(k, len(cand_ids))
    start = cand_ids[:1, :1].expand(b, 1)  # (B, 1) [DEC]
    first = arch.text_decoder(model)(input_ids=start, encoder_hidden_states=states,
                               encoder_attention_mask=state_mask, use_cache=False).logits[:, 0]  # (B, V)
    first = F.log_softmax(first.float(), dim=-1)[:, cand_ids[:, 1]]  # (B, C) log p(first answer token)
    top = first.topk(k, dim=1).indices  # (B, k)
    rows = torch.arange(b, device=states.device).repeat_interleave(k)
    log_lik = answer_log_likelihood(model, states[rows], state_mask[rows], cand_ids[top.flatten()],
                                    cand_mask[top.flatten()]).view(b, k)
    return top.gather(1, log_lik.argmax(1, keepdim=True)).squeeze(1)


@torch.no_grad()
def generate_answers(model, states, state_mask, dec_id: int, sep_id: int, max_len: int = 10,
                     use_cache: bool = True) -> list[list[int]]:
    """Greedy decoding from [DEC], at most ``max_len`` tokens with [DEC] (BLIP's ``max_length``), stopping at
    [SEP] -> the answer tokens of each question.

    With ``use_cache`` (BLIP's ``generate``) each step feeds only the newest token and reads the earlier ones'
    self-attention keys and values from the decoder's KV cache; the cross-attention keys and values of the
    question states are computed once. A method that tells cached steps apart (Aurora's
    ``decode_delta="official"``) sees them as the official code does. Without it every step re-reads the
    whole prefix: the same tokens for a method that does not.
    """
    decoder = arch.text_decoder(model)
    b = states.shape[0]
    ids = torch.full((b, 1), dec_id, dtype=torch.long, device=states.device)  # (B, 1): every answer so far
    done = torch.zeros(b, dtype=torch.bool, device=states.device)
    cache, fed = None, ids  # fed: what this step reads, the newest token alone once the cache holds the rest
    for _ in range(max_len - 1):
        step = decoder(input_ids=fed, encoder_hidden_states=states, encoder_attention_mask=state_mask,
                       cache=cache, use_cache=use_cache)
        nxt = torch.where(done, sep_id, step.logits[:, -1].argmax(-1))  # (B,) finished answers keep [SEP]
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        done |= nxt == sep_id
        if done.all():
            break
        cache, fed = (step.cache, nxt[:, None]) if use_cache else (None, ids)
    out = []
    for row in ids[:, 1:].tolist():
        out.append(row[: row.index(sep_id)] if sep_id in row else row)
    return out


def decode(backbone, ids: list[int]) -> str:
    """Answer tokens -> text with the backbone's tokenizer (a tokenizer without ``decode`` gives ids)."""
    fn = getattr(backbone.tokenizer, "decode", None)
    return fn(ids).strip() if fn is not None else " ".join(f"#{i}" for i in ids)


@torch.no_grad()
def predict(model, backbone, data: VQAData, k_test: int = 128, max_len: int = 10, batch_size: int = 64) -> list[str]:
    """One answer per question: the best-ranked candidate of ``data.answer_list``, else a greedy generation."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dec_id, sep_id = special_ids(backbone)
    if data.answer_list is not None:
        cand_ids, cand_mask = (t.to(device) for t in tokenize_answers(backbone, data.answer_list))
    predictions: list[str] = []
    mine = distributed.part(len(data.questions))  # data-parallel processes answer a share of the questions each
    for start in range(mine.start, mine.stop, batch_size):
        idx = np.arange(start, min(start + batch_size, mine.stop))
        visual = visual_tokens(model, backbone.pixels(data.visual_batch(idx, train=False)).to(device))
        states, state_mask = encode_questions(model, backbone, visual, [data.questions[i] for i in idx])
        if data.answer_list is not None:
            best = rank_answers(model, states, state_mask, cand_ids, cand_mask, k_test)
            predictions += [data.answer_list[i] for i in best.tolist()]
        else:
            predictions += [decode(backbone, ids) for ids in generate_answers(model, states, state_mask, dec_id,
                                                                              sep_id, max_len)]
    model.train(was_training)
    return distributed.gather_lists(predictions)


def score(prediction: str, answers: list[str], scoring: str, scorer: str = "official") -> float:
    """0-1 score of one prediction: VQA accuracy with ``scorer`` ("official" or "lavis", see
    ``vqa_accuracy``), or exact match against the one answer (``scorer`` unused)."""
    return vqa_accuracy(prediction, answers, scorer) if scoring == "vqa" else float(prediction == answers[0])


def evaluate(model, backbone, data: VQAData, k_test: int = 128, max_len: int = 10,
             scorer: str = "official") -> dict:
    """``accuracy`` in percent (and ``accuracy_<kind>`` per question type, where the data has kinds).
    ``scorer`` picks the VQA accuracy variant for "vqa" scoring ("official" or "lavis")."""
    if any(not a for a in data.answers):
        raise ValueError("evaluation needs answers for every question (a test split without answers can only "
                         "be predicted)")
    preds = predict(model, backbone, data, k_test, max_len)
    scores = np.array([score(p, a, data.scoring, scorer) for p, a in zip(preds, data.answers)])
    out = {"accuracy": 100.0 * float(scores.mean())}
    for kind in sorted(set(data.kinds or ())):
        out[f"accuracy_{kind}"] = 100.0 * float(scores[[k == kind for k in data.kinds]].mean())
    return out
