"""Synthetic clips for the proxy video benchmarks: world.py's shapes, some of them moving, captioned by motion.

Why motion *axis* and *moving vs still*, never direction: BLIP has no temporal position embedding, the ITC
feature is a mean over frames and ITM reads the frames' tokens as one unordered set. A clip played backwards
gives the model exactly the same input, so "moves to the left" vs "moves to the right" would be unlearnable.
What the model can see is the *set* of places an object occupies: one cell (still), the three cells of its
row (moves between left and right) or of its column (moves between top and bottom). Movers travel in a random
direction that no caption mentions.

Why one frame is not enough: every clip comes with a twin (the same objects in the same home cells, other
motions), and a mover passes through its home cell, so a single frame of a clip can equal one of its twin's.

Captions use only the proxy tokenizer's words for what matters (colour, shape, size, places, "left and
right", "top and bottom"); the verbs ("moves", "stays", "between") are outside its vocabulary and become
[UNK], which carries nothing. The pretrained backbone never saw a clip or a motion caption.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from suites.proxy import world

MOTIONS = ("still", "across", "updown")  # across: along its row; updown: along its column
_ROW_NAMES = ("at the top", "in the center", "at the bottom")
_COL_NAMES = ("at the left", "in the center", "at the right")


@dataclass(frozen=True)
class Mover:
    obj: world.Obj  # obj.cell is the home cell: where a still object stays, a cell a mover passes through
    motion: str
    reverse: bool = False  # direction of travel: random and never described (invisible, see module doc)

    def cells(self) -> tuple[int, ...]:
        """Cells visited, in travel order."""
        row, col = divmod(self.obj.cell, 3)
        if self.motion == "still":
            path = (self.obj.cell,)
        elif self.motion == "across":
            path = tuple(row * 3 + c for c in range(3))
        else:
            path = tuple(r * 3 + col for r in range(3))
        return path[::-1] if self.reverse else path

    def cell_at(self, t: int, n_frames: int) -> int:
        path = self.cells()
        return path[t * len(path) // n_frames]  # equal time in each cell of the path


@dataclass(frozen=True)
class Clip:
    movers: tuple[Mover, ...]


def _feasible(movers) -> bool:
    """Objects never share a cell, at any time: the cells their paths cover are pairwise disjoint."""
    seen: set[int] = set()
    for m in movers:
        cells = set(m.cells())
        if cells & seen:
            return False
        seen |= cells
    return True


def _assign_motions(objs, rng: np.random.Generator, avoid: tuple[str, ...] | None = None) -> tuple[Mover, ...] | None:
    """Random feasible motions for objects in fixed cells, different from ``avoid``; None if none found."""
    for _ in range(50):
        motions = tuple(MOTIONS[i] for i in rng.integers(0, 3, len(objs)))
        movers = tuple(Mover(o, m, bool(rng.random() < 0.5)) for o, m in zip(objs, motions))
        if motions != avoid and _feasible(movers):
            return movers
    return None


def sample_clip_pair(rng: np.random.Generator, n_objects: int) -> tuple[Clip, Clip]:
    """A clip and its twin: the same objects in the same home cells, moving differently."""
    while True:
        pairs = rng.permutation(len(world.COLORS) * len(world.SHAPES))[:n_objects]
        cells = rng.permutation(9)[:n_objects]
        objs = [world.Obj(world.SHAPES[p % 6], world.COLORS[p // 6], world.SIZES[int(rng.integers(2))], int(c))
                for p, c in zip(pairs, cells)]
        first = _assign_motions(objs, rng)
        twin = first and _assign_motions(objs, rng, avoid=tuple(m.motion for m in first))
        if twin:
            return Clip(first), Clip(twin)


def render_clip(clip: Clip, seed: int, shift: world.Shift, n_frames: int = 8, image_size: int = 48) -> np.ndarray:
    """uint8 (T, H, W, 3). Every frame is rendered from the same seed: a static camera, the same background,
    texture and per-object jitter, so only the objects' cells change between frames."""
    frames = np.empty((n_frames, image_size, image_size, 3), np.uint8)
    for t in range(n_frames):
        objs = tuple(world.Obj(m.obj.shape, m.obj.color, m.obj.size, m.cell_at(t, n_frames)) for m in clip.movers)
        frames[t] = world.render(world.Scene(objs), np.random.default_rng(seed), shift, image_size)
    return frames


# ---------------------------------------------------------------- facts and captions


def _facts(m: Mover) -> set:
    """What a phrase about one object asserts; a mover's line is its row (across) or column (updown)."""
    o = m.obj
    out = {("obj", *o.key), ("motion", *o.key, m.motion)}
    if m.motion == "still":
        out.add(("at", *o.key, o.cell))
    return out


def clip_facts(clip: Clip) -> frozenset:
    facts = {("count", len(clip.movers))}
    for m in clip.movers:
        o = m.obj
        facts |= _facts(m) | {("size", *o.key, o.size), ("line", *o.key, m.motion, _line(m))}
    return frozenset(facts)


def _line(m: Mover) -> int:
    row, col = divmod(m.obj.cell, 3)
    return {"still": m.obj.cell, "across": row, "updown": col}[m.motion]


def _phrase(m: Mover, size: bool, place: bool) -> tuple[str, set]:
    """'a large red circle moves between left and right at the top' and the facts it asserts."""
    o = m.obj
    np_ = f"a {o.size} {o.color} {o.shape}" if size else f"a {o.color} {o.shape}"
    facts = _facts(m) | ({("size", *o.key, o.size)} if size else set())
    if m.motion == "still":
        where = "in the center" if o.cell == 4 else f"at the {world.CELLS[o.cell]}"
        return f"{np_} stays {where}", facts
    axis = "left and right" if m.motion == "across" else "top and bottom"
    text = f"{np_} moves between {axis}"
    if place:  # the row of a horizontal mover, the column of a vertical one
        text += " " + (_ROW_NAMES if m.motion == "across" else _COL_NAMES)[_line(m)]
        facts.add(("line", *o.key, m.motion, _line(m)))
    return text, facts


def _sentence_list(movers, rng, size_p: float, place_p: float) -> tuple[list[str], set]:
    texts, facts = [], set()
    for i in rng.permutation(len(movers)):
        text, f = _phrase(movers[i], rng.random() < size_p, rng.random() < place_p)
        texts.append(text)
        facts |= f
    return texts, facts


def _count(n: int) -> str:
    return f"{world.COUNT_WORDS[n - 1]} {'object' if n == 1 else 'objects'}"


def caption(clip: Clip, rng: np.random.Generator, shift: world.Shift, style: str) -> world.Caption:
    """One caption. Styles: "all" (every object's motion), "count" (a count, then "all"), "one" (a single
    object, for training variety) and "paragraph" (DiDeMo-like: a count sentence, then one sentence per
    object, joined without punctuation as BLIP's pre_caption leaves them)."""
    movers = clip.movers
    # the proxy backbone reads 30 words: three plain phrases and a count already take 28, so sizes and
    # places are only added for one or two objects
    extra = 1.0 if len(movers) < 3 else 0.0
    if style == "one":
        texts, facts = _sentence_list(movers[int(rng.integers(len(movers))):][:1], rng, 0.5, 0.5)
        text = texts[0]
    elif style == "paragraph":
        texts, facts = _sentence_list(movers, rng, 0.5 * extra, 0.5 * extra)
        intro = "there is " + ("one object" if len(movers) == 1 else _count(len(movers)))
        text = " ".join([intro, *texts])
        facts.add(("count", len(movers)))
    else:
        texts, facts = _sentence_list(movers, rng, 0.3 * extra, 0.3 * extra)
        text = " and ".join(texts)
        if style == "count":
            text = f"{_count(len(movers))} {text}"
            facts.add(("count", len(movers)))
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
               styles: tuple[str, ...], n_frames: int = 8, image_size: int = 48) -> ClipSplit:
    """Deterministic in its arguments. Clips come in twins (consecutive indices); slot k of a clip's captions
    uses style ``styles[k % len(styles)]``."""
    clip_rng, pixel_rng, text_rng = np.random.default_rng(seed).spawn(3)
    clips: list[Clip] = []
    while len(clips) < n_clips:
        clips += sample_clip_pair(clip_rng, int(clip_rng.choice(n_objects)))
    clips = clips[:n_clips]
    pixels = np.stack([render_clip(c, int(pixel_rng.integers(2**31)), shift, n_frames, image_size) for c in clips])
    caps = [caption(c, text_rng, shift, styles[k % len(styles)]) for c in clips for k in range(captions_per_clip)]
    txt2img = np.repeat(np.arange(n_clips, dtype=np.int64), captions_per_clip)
    return ClipSplit(pixels, clips, [c.text for c in caps], caps, txt2img)
