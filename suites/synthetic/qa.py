"""Synthetic visual question answering over the scenes of ``suites.synthetic.world``.

Questions ask about attributes (colour, shape, size, place), counts, existence and relations; answers are
short words from a fixed list (so BLIP-style ranking and greedy generation both apply). Every question
gets 10 "annotator" answers: mostly the truth, sometimes with a few plausible slips, so the answer weights
and the official VQA accuracy behave as on VQAv2. A ``Shift`` moves a split away from the QA pretraining
distribution exactly as for retrieval (held-out colour-shape pairs, textured backgrounds, synonyms), plus
new question phrasings (``new_template_frac``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from suites.synthetic import world

COUNT_ANSWERS = ("1", "2", "3")  # digits: the VQA scorer turns a predicted "two" into "2"
YES_NO = ("yes", "no")
ANSWER_LIST = tuple(sorted({*world.COLORS, *world.SHAPES, *world.SIZES, *world.CELLS, *COUNT_ANSWERS, *YES_NO}))
KINDS = ("color", "shape", "size", "where", "count", "exists", "relation")
# Words the questions use beyond the captions' vocabulary (the proxy tokenizer grows by these).
QUESTION_WORDS = ("?", "an", "what", "which", "color", "colour", "does", "have", "shape", "size", "small", "or",
                  "where", "part", "how", "many", "are", "number", "contain", "to", "over", "is", "yes", "no",
                  *COUNT_ANSWERS, "0", "change", "changing")
ANNOTATORS = 10
SLIP_P = 0.3  # share of questions where 1-3 of the 10 annotators give another answer of the same kind


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str


def _name(o: world.Obj) -> str:
    return f"{o.color} {o.shape}"


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# Each question kind: (objects, rng, new phrasing?, absent pair) -> QA, or None where the scene cannot ask it.
def _color(objs, rng, new, absent):
    unique = [o for o in objs if sum(p.shape == o.shape for p in objs) == 1]
    if not unique:
        return None
    o = unique[int(rng.integers(len(unique)))]
    q = f"which colour does the {o.shape} have ?" if new else f"what color is the {o.shape} ?"
    return QA(q, o.color, "color")


def _shape(objs, rng, new, absent):
    unique = [o for o in objs if sum(p.color == o.color for p in objs) == 1]
    if not unique:
        return None
    o = unique[int(rng.integers(len(unique)))]
    q = f"the {o.color} object is which shape ?" if new else f"what shape is the {o.color} object ?"
    return QA(q, o.shape, "shape")


def _size(objs, rng, new, absent):
    o = objs[int(rng.integers(len(objs)))]
    q = f"is the {_name(o)} small or large ?" if new else f"what size is the {_name(o)} ?"
    return QA(q, o.size, "size")


def _where(objs, rng, new, absent):
    o = objs[int(rng.integers(len(objs)))]
    q = f"in which part of the picture is the {_name(o)} ?" if new else f"where is the {_name(o)} ?"
    return QA(q, world.CELLS[o.cell], "where")


def _count(objs, rng, new, absent):
    q = "what is the number of objects ?" if new else "how many objects are there ?"
    return QA(q, COUNT_ANSWERS[len(objs) - 1], "count")


def _exists(objs, rng, new, absent):
    present = rng.random() < 0.5
    color, shape = objs[int(rng.integers(len(objs)))].key if present else absent
    a = _a(color)
    q = f"does the picture contain {a} {color} {shape} ?" if new else f"is there {a} {color} {shape} ?"
    return QA(q, "yes" if present else "no", "exists")


def _relation(objs, rng, new, absent):
    if len(objs) < 2:
        return None
    a, b = (objs[i] for i in rng.permutation(len(objs))[:2])
    horizontal = a.cell % 3 != b.cell % 3 and (a.cell // 3 == b.cell // 3 or rng.random() < 0.5)
    if horizontal:
        truth = a.cell % 3 < b.cell % 3
        q = f"is the {_name(a)} {'to the left of' if new else 'left of'} the {_name(b)} ?"
    else:
        truth = a.cell // 3 < b.cell // 3
        q = f"is the {_name(a)} {'over' if new else 'above'} the {_name(b)} ?"
    return QA(q, "yes" if truth else "no", "relation")


_ASK = {"color": _color, "shape": _shape, "size": _size, "where": _where, "count": _count, "exists": _exists,
        "relation": _relation}
_SAME_KIND = {"color": world.COLORS, "shape": world.SHAPES, "size": world.SIZES, "where": world.CELLS,
              "count": COUNT_ANSWERS, "exists": YES_NO, "relation": YES_NO}


def _absent_pair(scene: world.Scene, rng: np.random.Generator, shift: world.Shift) -> tuple[str, str]:
    """A colour-shape pair not in the scene (from the held-out pairs half the time, where the split uses them)."""
    keys = {o.key for o in scene.objects}
    pool = sorted(world.HELD_OUT_PAIRS) if shift.held_out_pairs and rng.random() < 0.5 else \
        [(c, s) for c in world.COLORS for s in world.SHAPES if (c, s) not in world.HELD_OUT_PAIRS]
    pool = [p for p in pool if p not in keys]
    return pool[int(rng.integers(len(pool)))]


def annotate(truth: str, kind: str, rng: np.random.Generator) -> list[str]:
    """10 annotator answers: the truth, with 1-3 slips to another answer of the same kind on some questions."""
    answers = [truth] * ANNOTATORS
    if rng.random() < SLIP_P:
        others = [a for a in _SAME_KIND[kind] if a != truth]
        for i in rng.permutation(ANNOTATORS)[: int(rng.integers(1, 4))]:
            answers[i] = others[int(rng.integers(len(others)))]
    return answers


def _synonyms(text: str, rng: np.random.Generator, frac: float) -> str:
    words = text.split()
    coins = rng.random(len(words))
    return " ".join(world.SYNONYMS.get(w, w) if c < frac else w for w, c in zip(words, coins))


def ask(scene: world.Scene, rng: np.random.Generator, shift: world.Shift, n: int) -> list[QA]:
    """n distinct questions about a scene, kinds drawn uniformly among those the scene can answer."""
    objs = list(scene.objects)
    out: list[QA] = []
    seen: set[str] = set()
    for _ in range(8 * n):  # retries for kinds the scene cannot ask and for repeated questions
        if len(out) == n:
            break
        kind = KINDS[int(rng.integers(len(KINDS)))]
        qa = _ASK[kind](objs, rng, rng.random() < shift.new_template_frac, _absent_pair(scene, rng, shift))
        if qa is None:
            continue
        qa = QA(_synonyms(qa.question, rng, shift.synonym_frac), qa.answer, qa.kind)
        if qa.question not in seen:
            seen.add(qa.question)
            out.append(qa)
    return out


@dataclass
class QASplit:
    images: np.ndarray  # uint8 (N, H, W, 3), or clips (N, T, H, W, 3)
    questions: list[str]
    image_idx: np.ndarray  # int64 (Q,)
    answers: list[list[str]]  # 10 annotator answers per question
    kinds: list[str]


def make_qa_split(seed: int, n_images: int, questions_per_image: int, shift: world.Shift,
                  image_size: int = 48) -> QASplit:
    """Deterministic in (seed, args); scenes, pixels and questions use separate child streams."""
    scene_rng, pixel_rng, text_rng = np.random.default_rng(seed).spawn(3)
    images = np.empty((n_images, image_size, image_size, 3), np.uint8)
    questions, image_idx, answers, kinds = [], [], [], []
    for i in range(n_images):
        scene = world.sample_scene(scene_rng, shift)
        images[i] = world.render(scene, pixel_rng, shift, image_size)
        for qa in ask(scene, text_rng, shift, questions_per_image):
            questions.append(qa.question)
            image_idx.append(i)
            answers.append(annotate(qa.answer, qa.kind, text_rng))
            kinds.append(qa.kind)
    return QASplit(images, questions, np.array(image_idx, dtype=np.int64), answers, kinds)


def vqa_data(split: QASplit):
    """A synthetic QA split as ``VQAData``: BLIP's answer weights, ranking over ``ANSWER_LIST``, VQA accuracy."""
    from suites.tasks.vqa import VQAData, answer_weights

    return VQAData(split.images, split.questions, split.image_idx, [answer_weights(a) for a in split.answers],
                   split.answers, list(range(len(split.questions))), answer_list=list(ANSWER_LIST),
                   scoring="vqa", kinds=split.kinds)


def vocabulary() -> list[str]:
    """Question and answer words not already in the caption vocabulary, in a fixed order."""
    caption_words = set(world.vocabulary())
    words = [*QUESTION_WORDS, *(w for a in ANSWER_LIST for w in a.split())]
    return [w for w in dict.fromkeys(words) if w not in caption_words]


# ---------------------------------------------------------------- video QA on the clips of suites.synthetic.clips

CLIP_KINDS = ("changing", "changing_count", "color")  # the first two need several frames (suites.synthetic.clips)


def _clip_question(actors, rng: np.random.Generator, new: bool, kind: str) -> QA | None:
    a = actors[int(rng.integers(len(actors)))]
    shape = a.obj.shape  # shapes differ within a clip, and a changing object has no single colour to name it by
    if kind == "changing":
        q = f"is the {shape} changing color ?" if new else f"does the {shape} change color ?"
        return QA(q, "yes" if a.changes else "no", kind)
    if kind == "changing_count":
        q = "what is the number of objects changing color ?" if new else "how many objects change color ?"
        return QA(q, str(sum(x.changes for x in actors)), kind)
    return _color([x.obj for x in actors if not x.changes], rng, new, None)  # one colour only if it keeps it


def ask_clip(clip, rng: np.random.Generator, shift: world.Shift, n: int) -> list[QA]:
    """n distinct questions about a clip; most need the colour changes, which no single frame shows."""
    out: list[QA] = []
    for _ in range(8 * n):
        if len(out) == n:
            break
        kind = CLIP_KINDS[int(rng.integers(len(CLIP_KINDS)))]
        item = _clip_question(clip.actors, rng, rng.random() < shift.new_template_frac, kind)
        if item is None:
            continue
        item = QA(_synonyms(item.question, rng, shift.synonym_frac), item.answer, item.kind)
        if item.question not in {o.question for o in out}:
            out.append(item)
    return out


def make_clip_qa_split(seed: int, n_clips: int, questions_per_clip: int, shift: world.Shift,
                       n_objects: tuple[int, ...] = (1, 2, 3), n_frames: int = 8, image_size: int = 48) -> QASplit:
    """MSRVTT-QA-style split over clip pairs (the same objects, other colour changes): one answer per question."""
    from suites.synthetic import clips

    clip_rng, pixel_rng, text_rng = np.random.default_rng(seed).spawn(3)
    scenes: list = []
    while len(scenes) < n_clips:
        scenes += clips.sample_clip_group(clip_rng, int(clip_rng.choice(n_objects)))
    scenes = scenes[:n_clips]
    frames = np.stack([clips.render_clip(c, int(pixel_rng.integers(2**31)), shift, n_frames, image_size)
                       for c in scenes])  # (n, T, H, W, 3)
    questions, clip_idx, answers, kinds = [], [], [], []
    for i, clip in enumerate(scenes):
        for item in ask_clip(clip, text_rng, shift, questions_per_clip):
            questions.append(item.question)
            clip_idx.append(i)
            answers.append([item.answer])
            kinds.append(item.kind)
    return QASplit(frames, questions, np.array(clip_idx, dtype=np.int64), answers, kinds)


def video_qa_data(split: QASplit, weight: float = 0.05):
    """A clip QA split as ``VQAData`` the way MSRVTT-QA is read: one answer at a fixed weight (Aurora's
    0.05), greedy generation, exact-match scoring."""
    from suites.tasks.vqa import VQAData

    return VQAData(split.images, split.questions, split.image_idx, [([a[0]], [weight]) for a in split.answers],
                   split.answers, list(range(len(split.questions))), answer_list=None, scoring="exact",
                   kinds=split.kinds)
