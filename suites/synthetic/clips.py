"""Synthetic clips for the proxy video benchmarks: world.py's shapes, some of them changing colour mid-clip.

What a clip's meaning depends on: which objects keep their colour and which change from one colour to
another halfway through. A single frame shows every object in one colour, so it cannot tell an object that
changes between red and blue from one that stays red (or blue): only several frames can.

Why colour change and not motion: the proxy backbone's ITC feature encodes colour perfectly and position not
at all (a linear probe on the frozen backbone's image features, 600 training / 300 test images of one object:
colour 100 %, size 82 %, shape 51 %, cell 10 % with chance 11 %). Clips of objects moving between cells were
tried first: full fine-tuning scored the same with 1 frame as with 4 (proxy-msrvtt, 300 steps: 57.4 vs 58.4
R_mean; with batches of whole groups 50.8 vs 51.3), so the benchmark measured no use of time at all.

Why the direction of a change is never named: BLIP has no temporal position embedding, the ITC feature is a
mean over frames and ITM reads the frames' tokens as one unordered set. "turns from red to blue" and "turns
from blue to red" give the model the same input, so captions say "changes between red and blue".

Clips come in groups: the same shapes, sizes and cells, each object with the same two candidate colours, and
each clip of the group gives some object another colour programme (stays in its first colour, stays in its
second, or changes between them). A clip's group mates are the negatives that one frame cannot reject.

Captions use only the proxy tokenizer's words for what matters (colour, shape, size); the verbs ("changes",
"stays", "between") are outside its vocabulary and become [UNK], which carries nothing, so "between red and
blue" must be learned from clips. The pretrained backbone never saw a clip or a changing object.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from suites.synthetic import world

PROGRAMS = ("first", "second", "change")  # stays in its first colour, stays in its second, changes between them


@dataclass(frozen=True)
class Actor:
    obj: world.Obj  # obj.color: its colour in the first half of the clip
    second: str | None = None  # its colour in the second half; None: it keeps obj.color

    @property
    def changes(self) -> bool:
        return self.second is not None

    def color_at(self, t: int, n_frames: int) -> str:
        return self.second if self.changes and 2 * t >= n_frames else self.obj.color


@dataclass(frozen=True)
class Clip:
    actors: tuple[Actor, ...]


def sample_clip_group(rng: np.random.Generator, n_objects: int, size: int = 2) -> list[Clip]:
    """``size`` clips of the same objects (shape, size, cell, two candidate colours), each with another
    combination of colour programmes (``PROGRAMS``). Shapes differ within a clip, so the shape names an object."""
    if size > len(PROGRAMS) ** n_objects:
        raise ValueError(f"{n_objects} object(s) have {len(PROGRAMS) ** n_objects} colour programmes, asked {size}")
    shapes = rng.permutation(len(world.SHAPES))[:n_objects]
    cells = rng.permutation(9)[:n_objects]
    sizes = rng.integers(2, size=n_objects)
    colors = [rng.permutation(len(world.COLORS))[:2] for _ in range(n_objects)]  # (first, second) per object
    combos = list(itertools.product(range(len(PROGRAMS)), repeat=n_objects))
    group = []
    for k in rng.permutation(len(combos))[:size]:
        actors = []
        for i, program in enumerate(combos[k]):
            first, second = (world.COLORS[c] for c in colors[i])
            if PROGRAMS[program] == "second":
                first = second
            elif PROGRAMS[program] == "change" and rng.random() < 0.5:  # the order is random and never named
                first, second = second, first
            obj = world.Obj(world.SHAPES[shapes[i]], first, world.SIZES[sizes[i]], int(cells[i]))
            actors.append(Actor(obj, second if PROGRAMS[program] == "change" else None))
        group.append(Clip(tuple(actors)))
    return group


def render_clip(clip: Clip, seed: int, shift: world.Shift, n_frames: int = 8, image_size: int = 48) -> np.ndarray:
    """uint8 (T, H, W, 3). Every frame is rendered from the same seed: a static camera, the same background,
    texture and per-object jitter, so only the changing objects' colours differ between frames."""
    frames = np.empty((n_frames, image_size, image_size, 3), np.uint8)
    for t in range(n_frames):
        objs = tuple(world.Obj(a.obj.shape, a.color_at(t, n_frames), a.obj.size, a.obj.cell) for a in clip.actors)
        frames[t] = world.render(world.Scene(objs), np.random.default_rng(seed), shift, image_size)
    return frames


# ---------------------------------------------------------------- facts and captions


def _colors(a: Actor) -> frozenset:
    return frozenset({a.obj.color, a.second} - {None})


def _facts(a: Actor, size: bool) -> set:
    """What a phrase about one object asserts: its shape, its colour programme and, if named, its size."""
    shape = a.obj.shape
    facts = {("obj", shape), ("change" if a.changes else "stays", shape, _colors(a))}
    return facts | ({("size", shape, a.obj.size)} if size else set())


def clip_facts(clip: Clip) -> frozenset:
    return frozenset({("count", len(clip.actors))}.union(*(_facts(a, size=True) for a in clip.actors)))


def _phrase(a: Actor, size: bool) -> tuple[str, set]:
    """'a large circle changes between red and blue' or 'a red circle stays', and the facts it asserts."""
    o = a.obj
    size_word = f"{o.size} " if size else ""
    if a.changes:
        return f"a {size_word}{o.shape} changes between {o.color} and {a.second}", _facts(a, size)
    return f"a {size_word}{o.color} {o.shape} stays", _facts(a, size)


def _sentence_list(actors, rng, size_p: float) -> tuple[list[str], set]:
    texts, facts = [], set()
    for i in rng.permutation(len(actors)):
        text, f = _phrase(actors[i], rng.random() < size_p)
        texts.append(text)
        facts |= f
    return texts, facts


def _count(n: int) -> str:
    return f"{world.COUNT_WORDS[n - 1]} {'object' if n == 1 else 'objects'}"


def caption(clip: Clip, rng: np.random.Generator, shift: world.Shift, style: str) -> world.Caption:
    """One caption. Styles: "all" (every object), "count" (a count, then "all"), "one" (a single object, for
    training variety) and "paragraph" (DiDeMo-like: a count sentence, then one sentence per object, joined
    without punctuation as BLIP's pre_caption leaves them)."""
    actors = clip.actors
    # the proxy backbone reads 30 words: three plain phrases and a count take up to 28, so sizes are only
    # named for one or two objects
    sized = 1.0 if len(actors) < 3 else 0.0
    if style == "one":
        texts, facts = _sentence_list(actors[int(rng.integers(len(actors))):][:1], rng, 0.5)
        text = texts[0]
    elif style == "paragraph":
        texts, facts = _sentence_list(actors, rng, 0.5 * sized)
        intro = "there is " + ("one object" if len(actors) == 1 else _count(len(actors)))
        text = " ".join([intro, *texts])
        facts.add(("count", len(actors)))
    else:
        texts, facts = _sentence_list(actors, rng, 0.3 * sized)
        text = " and ".join(texts)
        if style == "count":
            text = f"{_count(len(actors))} {text}"
            facts.add(("count", len(actors)))
    return world.Caption(world._finish(text, rng, shift.synonym_frac), frozenset(facts), style)


# ---------------------------------------------------------------- splits


@dataclass
class ClipSplit:
    clips: np.ndarray  # uint8 (n, T, H, W, 3)
    scenes: list[Clip]
    texts: list[str]  # all captions of clip 0, then clip 1, ...
    captions: list[world.Caption] = field(repr=False)
    txt2img: np.ndarray = field(repr=False)  # int64 (n_texts,)


def make_split(seed: int, n_clips: int, captions_per_clip: int, shift: world.Shift, n_objects: tuple[int, ...],
               styles: tuple[str, ...], n_frames: int = 8, image_size: int = 48, group: int = 2) -> ClipSplit:
    """Deterministic in its arguments. Clips come in groups of ``group`` (consecutive indices; see
    ``sample_clip_group``); slot k of a clip's captions uses style ``styles[k % len(styles)]``."""
    clip_rng, pixel_rng, text_rng = np.random.default_rng(seed).spawn(3)
    clips: list[Clip] = []
    while len(clips) < n_clips:
        clips += sample_clip_group(clip_rng, int(clip_rng.choice(n_objects)), group)
    clips = clips[:n_clips]
    pixels = np.stack([render_clip(c, int(pixel_rng.integers(2**31)), shift, n_frames, image_size) for c in clips])
    caps = [caption(c, text_rng, shift, styles[k % len(styles)]) for c in clips for k in range(captions_per_clip)]
    txt2img = np.repeat(np.arange(n_clips, dtype=np.int64), captions_per_clip)
    return ClipSplit(pixels, clips, [c.text for c in caps], caps, txt2img)
