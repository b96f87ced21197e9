"""Synthetic image-caption world: a cheap, learnable proxy for COCO/Flickr retrieval.

Scenes hold 1-3 coloured shapes on a 3x3 grid; captions describe them with templates.
`Shift` knobs move a split away from the pretraining distribution (held-out colour-shape
pairs, textured backgrounds, pixel noise, unseen templates, unseen synonyms), so a model
pretrained on the default distribution is worse zero-shot than after fine-tuning.

Facts are hashable tuples; objects are identified by (color, shape), unique within a scene:
    ("obj", color, shape)
    ("size", color, shape, size)
    ("at", color, shape, cell)
    ("rel", "left_of" | "above", (color, shape), (color, shape))   # strict column / row order
    ("count", n)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "cyan")
SIZES = ("small", "large")
CELLS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
COUNT_WORDS = ("one", "two", "three")

RGB = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 245),
    "yellow": (240, 230, 50),
    "purple": (160, 50, 210),
    "orange": (255, 140, 0),
    "white": (245, 245, 245),
    "cyan": (40, 225, 235),
}

# Fixed list: every shape twice, every colour at least once.
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("red", "circle"), ("cyan", "circle"),
    ("green", "square"), ("yellow", "square"),
    ("blue", "triangle"), ("white", "triangle"),
    ("yellow", "cross"), ("green", "cross"),
    ("purple", "diamond"), ("red", "diamond"),
    ("orange", "ring"), ("blue", "ring"),
})  # fmt: skip
_ALL_PAIRS = tuple((c, s) for c in COLORS for s in SHAPES)
_HELD = tuple(p for p in _ALL_PAIRS if p in HELD_OUT_PAIRS)
_SEEN = tuple(p for p in _ALL_PAIRS if p not in HELD_OUT_PAIRS)

# One unseen synonym per replaceable word; none of these appear in any template.
SYNONYMS = {
    "red": "crimson", "green": "emerald", "blue": "navy", "yellow": "golden",
    "purple": "violet", "orange": "amber", "white": "ivory", "cyan": "teal",
    "circle": "disc", "square": "box", "triangle": "wedge", "cross": "plus",
    "diamond": "rhombus", "ring": "hoop",
    "small": "tiny", "large": "big",
    "and": "with", "top": "upper", "bottom": "lower", "center": "middle",
    "above": "over", "below": "under", "object": "item", "objects": "items",
    "picture": "image", "shows": "contains",
}  # fmt: skip
_FUNCTION_WORDS = (
    "a", "an", "and", "at", "the", "in", "of", "left", "right", "above", "below",
    "object", "objects", "there", "is", "that", "to", "picture", "shows", "nothing", "else",
)  # fmt: skip
N_OBJECTS_P = (0.2, 0.4, 0.4)  # few single-object scenes: full captions then identify their image
_BACKGROUNDS = ("flat", "stripes", "checker")


@dataclass(frozen=True)
class Shift:
    """How a split departs from the pretraining distribution. All defaults = pretraining distribution."""

    held_out_pairs: bool = False  # objects drawn half from HELD_OUT_PAIRS, >= 1 per scene
    background: str = "flat"  # "flat" | "stripes" | "checker"
    background_strength: float = 0.0  # 0..1 contrast of stripes / checker
    noise: float = 0.03  # std of per-pixel gaussian noise, [0, 1] units
    new_template_frac: float = 0.0  # fraction of captions from the NEW templates
    synonym_frac: float = 0.0  # per-word probability of an unseen synonym

    def __post_init__(self):
        if self.background not in _BACKGROUNDS:
            raise ValueError(f"background must be one of {_BACKGROUNDS}, got {self.background!r}")
        for name in ("background_strength", "new_template_frac", "synonym_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.noise < 0:
            raise ValueError("noise must be >= 0")


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    size: str
    cell: int  # 0..8, row-major

    @property
    def key(self) -> tuple[str, str]:
        return (self.color, self.shape)


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]  # 1-3 objects, sorted by cell; distinct cells and (color, shape)


@dataclass(frozen=True)
class Caption:
    text: str
    facts: frozenset  # what the caption asserts
    template: str = ""  # template name, for per-template analysis


# ---------------------------------------------------------------- scenes and facts


def sample_scene(rng: np.random.Generator, shift: Shift) -> Scene:
    n = int(rng.choice(3, p=N_OBJECTS_P)) + 1
    if shift.held_out_pairs:
        held = rng.random(n) < 0.5
        while not held.any():  # rejection = the 50/50 draw conditioned on >= 1 held-out object
            held = rng.random(n) < 0.5
    else:
        held = np.zeros(n, bool)
    n_held = int(held.sum())
    pairs = [_HELD[i] for i in rng.permutation(len(_HELD))[:n_held]]
    pairs += [_SEEN[i] for i in rng.permutation(len(_SEEN))[: n - n_held]]
    cells = rng.permutation(9)[:n]
    sizes = rng.integers(0, 2, n)
    objs = (Obj(s, c, SIZES[z], int(cell)) for (c, s), z, cell in zip(pairs, sizes, cells))
    return Scene(tuple(sorted(objs, key=lambda o: o.cell)))


def _rel_facts(a: Obj, b: Obj) -> list[tuple]:
    """Relations from a to b (a left of b / a above b), strict by grid column / row."""
    out = []
    if a.cell % 3 < b.cell % 3:
        out.append(("rel", "left_of", a.key, b.key))
    if a.cell // 3 < b.cell // 3:
        out.append(("rel", "above", a.key, b.key))
    return out


def scene_facts(scene: Scene) -> frozenset:
    facts = [("count", len(scene.objects))]
    for o in scene.objects:
        facts += [("obj", *o.key), ("size", *o.key, o.size), ("at", *o.key, o.cell)]
        for b in scene.objects:
            facts += _rel_facts(o, b)
    return frozenset(facts)


def caption_true_of(caption: Caption, scene: Scene) -> bool:
    return caption.facts <= scene_facts(scene)


def truth_matrix(split_scenes: list[Scene], captions: list[Caption]) -> np.ndarray:
    """bool (S, C): caption j true of scene i. Inverted index, so cost ~ matches, not S*C."""
    index: dict[tuple, set[int]] = {}
    for i, scene in enumerate(split_scenes):
        for f in scene_facts(scene):
            index.setdefault(f, set()).add(i)
    out = np.zeros((len(split_scenes), len(captions)), bool)
    empty: set[int] = set()
    for j, cap in enumerate(captions):
        sets = sorted((index.get(f, empty) for f in cap.facts), key=len)
        if not sets:
            out[:, j] = True  # asserts nothing -> true of everything
            continue
        hits = sets[0].intersection(*sets[1:])
        out[list(hits), j] = True
    return out


# ---------------------------------------------------------------- rendering


@cache
def _mask(shape: str, d: int) -> np.ndarray:
    """bool (d, d) silhouette; coordinates in (-1, 1), y grows downwards."""
    c = (np.arange(d) - (d - 1) / 2) / (d / 2)
    y, x = np.meshgrid(c, c, indexing="ij")
    r2 = x * x + y * y
    if shape == "circle":
        return r2 <= 1.0
    if shape == "square":
        return (np.abs(x) <= 0.9) & (np.abs(y) <= 0.9)
    if shape == "triangle":  # apex up
        return (np.abs(x) <= (y + 1.0) / 2 + 0.05) & (y <= 0.9)
    if shape == "cross":
        return ((np.abs(x) <= 0.3) | (np.abs(y) <= 0.3)) & (np.abs(x) <= 1) & (np.abs(y) <= 1)
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= 1.05
    if shape == "ring":
        return (r2 <= 1.0) & (r2 >= 0.3)
    raise ValueError(shape)


@cache
def _grids(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[:image_size, :image_size]
    return y, x  # int (H, W) each


def _background(rng: np.random.Generator, shift: Shift, image_size: int) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1]. Always draws the same numbers, whatever the shift."""
    grey = 0.2 + rng.uniform(-0.05, 0.05)
    period = int(rng.integers(3, 7))
    phase = int(rng.integers(0, 12))
    flip = 1 if rng.random() < 0.5 else -1
    y, x = _grids(image_size)
    if shift.background == "flat" or shift.background_strength == 0:
        pattern = np.zeros((image_size, image_size), np.float32)
    elif shift.background == "stripes":  # diagonal, random direction / width / phase
        pattern = ((x + flip * y + phase) // period) % 2
    else:  # checker with random cell size / offset
        pattern = ((x + phase) // (period + 1) + (y + phase) // (period + 1)) % 2
    s = shift.background_strength
    lo, hi = grey - 0.15 * s, grey + 0.45 * s  # grey-only: shape cues blur, colours do not
    bg = (lo + (hi - lo) * pattern).astype(np.float32)
    return np.repeat(bg[:, :, None], 3, axis=2)


def render(scene: Scene, rng: np.random.Generator, shift: Shift, image_size: int = 48) -> np.ndarray:
    """uint8 (H, W, 3). Objects stay inside their cell (jitter clipped), so never overlap."""
    img = _background(rng, shift, image_size)
    scale = image_size / 48
    jit = max(1, round(2 * scale))
    for o in scene.objects:
        d = max(3, round((9 if o.size == "small" else 14) * scale))
        r, c = divmod(o.cell, 3)
        top = _place(r, d, image_size, int(rng.integers(-jit, jit + 1)))
        left = _place(c, d, image_size, int(rng.integers(-jit, jit + 1)))
        patch = img[top : top + d, left : left + d]  # view (d, d, 3)
        patch[_mask(o.shape, d)] = np.asarray(RGB[o.color], np.float32) / 255
    img += rng.standard_normal(img.shape, dtype=np.float32) * shift.noise
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _place(k: int, d: int, image_size: int, jitter: int) -> int:
    """Top/left pixel of an object of width d in grid row/col k, jittered but kept in the cell."""
    start, end = round(k * image_size / 3), round((k + 1) * image_size / 3)
    pos = start + (end - start - d) // 2 + jitter
    return max(start, min(pos, max(start, end - d)))


# ---------------------------------------------------------------- captions

_REL_BASE = {"left_of": "left of", "right_of": "right of", "above": "above", "below": "below"}
_REL_NEW = {
    "left_of": "is to the left of",
    "right_of": "is to the right of",
    "above": "is above",
    "below": "is below",
}


def _np(o: Obj, size: bool = False) -> str:
    return f"a {o.size} {o.color} {o.shape}" if size else f"a {o.color} {o.shape}"


def _where(cell: int) -> str:
    return "in the center" if cell == 4 else f"at the {CELLS[cell]}"


def _obj(o: Obj) -> tuple:
    return ("obj", *o.key)


def _size(o: Obj) -> tuple:
    return ("size", *o.key, o.size)


def _at(o: Obj) -> tuple:
    return ("at", *o.key, o.cell)


def _count(n: int) -> str:
    return f"{COUNT_WORDS[n - 1]} {'object' if n == 1 else 'objects'}"


def _relation(objs: list[Obj], rng: np.random.Generator) -> tuple[Obj, str, Obj, tuple]:
    """Random ordered pair (a, b) and a relation kind true of it, with its normalised fact."""
    a, b = objs[0], objs[1]  # objs is already shuffled
    kinds = []
    if a.cell % 3 != b.cell % 3:
        kinds.append("left_of" if a.cell % 3 < b.cell % 3 else "right_of")
    if a.cell // 3 != b.cell // 3:
        kinds.append("above" if a.cell // 3 < b.cell // 3 else "below")
    kind = kinds[int(rng.integers(len(kinds)))]
    lhs, rhs = (a, b) if kind in ("left_of", "above") else (b, a)
    fact = ("rel", "left_of" if kind in ("left_of", "right_of") else "above", lhs.key, rhs.key)
    return a, kind, b, fact


# Each template: (shuffled objects, rng) -> (text, facts). Objects arrive in random order.
def _t_sizes(objs, rng):  # "a large red circle and a small blue square"
    return " and ".join(_np(o, True) for o in objs), {f for o in objs for f in (_obj(o), _size(o))}


def _t_positions(objs, rng):  # "a red circle at the top left and a blue square in the center"
    text = " and ".join(f"{_np(o)} {_where(o.cell)}" for o in objs)
    return text, {f for o in objs for f in (_obj(o), _at(o))}


def _t_relation(objs, rng):  # "a red circle left of a blue square"
    if len(objs) < 2:
        return _t_positions(objs, rng)
    a, kind, b, fact = _relation(objs, rng)
    return f"{_np(a)} {_REL_BASE[kind]} {_np(b)}", {_obj(a), _obj(b), fact}


def _t_count(objs, rng):  # "two objects a red circle and a blue square"
    text = f"{_count(len(objs))} " + " and ".join(_np(o) for o in objs)
    return text, {("count", len(objs))} | {_obj(o) for o in objs}


def _t_partial(objs, rng):  # "a small red circle at the top left" (one object only)
    o = objs[0]
    return f"{_np(o, True)} {_where(o.cell)}", {_obj(o), _size(o), _at(o)}


def _t_there_is(objs, rng):  # "there is a circle that is red and large and a square that is ..."
    parts = [f"a {o.shape} that is {o.color} and {o.size}" for o in objs]
    return "there is " + " and ".join(parts), {f for o in objs for f in (_obj(o), _size(o))}


def _t_location_first(objs, rng):  # "in the top left there is a red circle and in the center ..."
    text = " and ".join(f"in the {CELLS[o.cell]} there is {_np(o)}" for o in objs)
    return text, {f for o in objs for f in (_obj(o), _at(o))}


def _t_picture_shows(objs, rng):  # "the picture shows a red circle and a blue square and nothing else"
    text = "the picture shows " + " and ".join(_np(o) for o in objs) + " and nothing else"
    return text, {("count", len(objs))} | {_obj(o) for o in objs}


def _t_is_relation(objs, rng):  # "a blue square is below a red circle"
    if len(objs) < 2:
        return _t_location_first(objs, rng)
    a, kind, b, fact = _relation(objs, rng)
    return f"{_np(a)} {_REL_NEW[kind]} {_np(b)}", {_obj(a), _obj(b), fact}


def _t_telegraphic(objs, rng):  # "circle red large top left square blue small center"
    text = " ".join(f"{o.shape} {o.color} {o.size} {CELLS[o.cell]}" for o in objs)
    return text, {f for o in objs for f in (_obj(o), _size(o), _at(o))}


BASE_TEMPLATES = {
    "sizes": _t_sizes,
    "positions": _t_positions,
    "relation": _t_relation,
    "count": _t_count,
    "partial": _t_partial,
}
NEW_TEMPLATES = {
    "there_is": _t_there_is,
    "location_first": _t_location_first,
    "picture_shows": _t_picture_shows,
    "is_relation": _t_is_relation,
    "telegraphic": _t_telegraphic,
}
_FAMILIES = (tuple(BASE_TEMPLATES.items()), tuple(NEW_TEMPLATES.items()))


def _finish(text: str, rng: np.random.Generator, synonym_frac: float) -> str:
    """Synonym swaps (coins always drawn, for stable streams) then a/an agreement."""
    words = text.split()
    coins = rng.random(len(words))
    words = [SYNONYMS.get(w, w) if c < synonym_frac else w for w, c in zip(words, coins)]
    for i in range(len(words) - 1):
        if words[i] in ("a", "an"):
            words[i] = "an" if words[i + 1][0] in "aeiou" else "a"
    return " ".join(words)


def describe(scene: Scene, rng: np.random.Generator, shift: Shift, n: int = 5) -> list[Caption]:
    """n captions; slot k uses template perm[k % 5] of its family, so 5 captions cover all 5."""
    perms = [rng.permutation(5), rng.permutation(5)]
    objs = list(scene.objects)
    caps: list[Caption] = []
    seen: set[str] = set()
    for k in range(n):
        fam_id = int(rng.random() < shift.new_template_frac)  # 0 base, 1 new
        fam, idx = _FAMILIES[fam_id], int(perms[fam_id][k % 5])
        for attempt in range(8):  # retry (random template) until the text is new, if possible
            if attempt:
                idx = int(rng.integers(5))
            order = [objs[i] for i in rng.permutation(len(objs))]
            name, fn = fam[idx]
            text, facts = fn(order, rng)
            text = _finish(text, rng, shift.synonym_frac)
            if text not in seen:
                break
        seen.add(text)
        caps.append(Caption(text, frozenset(facts), name))
    return caps


def vocabulary() -> list[str]:
    words = set(COLORS) | set(SHAPES) | set(SIZES) | set(COUNT_WORDS) | set(_FUNCTION_WORDS)
    words |= {w for cell in CELLS for w in cell.split()} | set(SYNONYMS.values())
    return sorted(words)


# ---------------------------------------------------------------- splits


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, H, W, 3)
    scenes: list[Scene]
    texts: list[str]  # all captions of image 0, then image 1, ...
    captions: list[Caption] = field(repr=False)  # parallel to texts
    txt2img: np.ndarray = field(repr=False)  # int64 (T,)


def make_split(
    seed: int, n_images: int, captions_per_image: int, shift: Shift, image_size: int = 48
) -> Split:
    """Deterministic in (seed, args). Scenes, pixels and texts use separate child streams, so
    splits with the same seed and held_out_pairs share scenes across the other shift knobs."""
    scene_rng, pixel_rng, text_rng = np.random.default_rng(seed).spawn(3)
    scenes = [sample_scene(scene_rng, shift) for _ in range(n_images)]
    images = np.empty((n_images, image_size, image_size, 3), np.uint8)
    captions: list[Caption] = []
    for i, scene in enumerate(scenes):
        images[i] = render(scene, pixel_rng, shift, image_size)
        captions += describe(scene, text_rng, shift, captions_per_image)
    txt2img = np.repeat(np.arange(n_images, dtype=np.int64), captions_per_image)
    return Split(images, scenes, [c.text for c in captions], captions, txt2img)
