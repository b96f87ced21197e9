"""Synthetic clips for the proxy video benchmarks: world.py's shapes, some of them moving, captioned by motion.

Why motion *axis* and *moving vs still*, never direction: BLIP has no temporal position embedding, the ITC
feature is a mean over frames and ITM reads the frames' tokens as one unordered set. A clip played backwards
gives the model exactly the same input, so "moves to the left" vs "moves to the right" would be unlearnable.
What the model can see is the *set* of places an object occupies: one cell (still), the three cells of its
row (moves between left and right) or of its column (moves between top and bottom). Movers travel in a random
direction that no caption mentions.

Why one frame is not enough: clips come in groups (the same objects in the same home cells, each clip of the
group with other motions), and captions never name a place. A single frame shows each object in one cell,
which a still object and a mover of either axis can all occupy, so it says nothing about motion: only the
set of cells over several frames tells the clips of a group apart. (Captions that named a still object's
cell let one frame reject a mover seen elsewhere; 1-frame and 4-frame models then scored alike.)

Captions use only the proxy tokenizer's words for what matters (colour, shape, size, "left and right", "top
and bottom"); the verbs ("moves", "stays", "between") are outside its vocabulary and become [UNK], which
carries nothing. The pretrained backbone never saw a clip or a motion caption.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from suites.proxy import world

MOTIONS = ("still", "across", "updown")  # across: along its row; updown: along its column


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


def _assign_motions(objs, rng: np.random.Generator, taken: set) -> tuple[Mover, ...] | None:
    """Random feasible motions for objects in fixed cells, a combination not in ``taken``; None if none found."""
    for _ in range(50):
        motions = tuple(MOTIONS[i] for i in rng.integers(0, 3, len(objs)))
        movers = tuple(Mover(o, m, bool(rng.random() < 0.5)) for o, m in zip(objs, motions))
        if motions not in taken and _feasible(movers):
            return movers
    return None


def sample_clip_group(rng: np.random.Generator, n_objects: int, size: int = 2) -> list[Clip]:
    """``size`` clips with the same objects in the same home cells, each moving differently (at most 3
    for a single object: still, across, updown)."""
    if size > 3 ** n_objects:
        raise ValueError(f"{n_objects} object(s) have at most {3 ** n_objects} motion combinations, asked {size}")
    while True:
        pairs = rng.permutation(len(world.COLORS) * len(world.SHAPES))[:n_objects]
        cells = rng.permutation(9)[:n_objects]
        objs = [world.Obj(world.SHAPES[p % 6], world.COLORS[p // 6], world.SIZES[int(rng.integers(2))], int(c))
                for p, c in zip(pairs, cells)]
        group: list[Clip] = []
        while len(group) < size:
            movers = _assign_motions(objs, rng, {tuple(m.motion for m in c.movers) for c in group})
            if movers is None:
                break
            group.append(Clip(movers))
        if len(group) == size:
            return group


def render_clip(clip: Clip, seed: int, shift: world.Shift, n_frames: int = 8, image_size: int = 48) -> np.ndarray:
    """uint8 (T, H, W, 3). Every frame is rendered from the same seed: a static camera, the same background,
    texture and per-object jitter, so only the objects' cells change between frames."""
    frames = np.empty((n_frames, image_size, image_size, 3), np.uint8)
    for t in range(n_frames):
        objs = tuple(world.Obj(m.obj.shape, m.obj.color, m.obj.size, m.cell_at(t, n_frames)) for m in clip.movers)
        frames[t] = world.render(world.Scene(objs), np.random.default_rng(seed), shift, image_size)
    return frames


# ---------------------------------------------------------------- facts and captions


def _facts(m: Mover, size: bool) -> set:
    """What a phrase about one object asserts: the object, its motion and, if named, its size."""
    o = m.obj
    return {("obj", *o.key), ("motion", *o.key, m.motion)} | ({("size", *o.key, o.size)} if size else set())


def clip_facts(clip: Clip) -> frozenset:
    return frozenset({("count", len(clip.movers))}.union(*(_facts(m, size=True) for m in clip.movers)))


def _phrase(m: Mover, size: bool) -> tuple[str, set]:
    """'a large red circle moves between left and right' and the facts it asserts. No place is named: see the
    module doc."""
    o = m.obj
    np_ = f"a {o.size} {o.color} {o.shape}" if size else f"a {o.color} {o.shape}"
    if m.motion == "still":
        return f"{np_} stays", _facts(m, size)
    axis = "left and right" if m.motion == "across" else "top and bottom"
    return f"{np_} moves between {axis}", _facts(m, size)


def _sentence_list(movers, rng, size_p: float) -> tuple[list[str], set]:
    texts, facts = [], set()
    for i in rng.permutation(len(movers)):
        text, f = _phrase(movers[i], rng.random() < size_p)
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
    # the proxy backbone reads 30 words: three plain phrases and a count take up to 28, so sizes are only
    # named for one or two objects
    sized = 1.0 if len(movers) < 3 else 0.0
    if style == "one":
        texts, facts = _sentence_list(movers[int(rng.integers(len(movers))):][:1], rng, 0.5)
        text = texts[0]
    elif style == "paragraph":
        texts, facts = _sentence_list(movers, rng, 0.5 * sized)
        intro = "there is " + ("one object" if len(movers) == 1 else _count(len(movers)))
        text = " ".join([intro, *texts])
        facts.add(("count", len(movers)))
    else:
        texts, facts = _sentence_list(movers, rng, 0.3 * sized)
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
