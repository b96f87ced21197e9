"""BLIP's image transforms for retrieval and VQA fine-tuning, in PIL and numpy, with every random draw taken
from a ``numpy.random.Generator`` the caller passes in.

What BLIP does (salesforce/BLIP ``data/__init__.py``, ``transform/randaugment.py``)::

    train: RandomResizedCrop(S, scale=(0.5, 1.0), interpolation=BICUBIC)  # torchvision, ratio (3/4, 4/3)
           RandomHorizontalFlip()                                        # p = 0.5
           RandomAugment(2, 5, isPIL=True, augs=BLIP_OPS)                # numpy / cv2
           ToTensor(), Normalize(CLIP mean, CLIP std)
    test:  Resize((S, S), interpolation=BICUBIC), ToTensor(), Normalize(...)

``RandomAugment(N, M)`` draws N op names uniformly *with replacement* (``np.random.choice``); each is then
applied with probability 1/2, in order, with its argument mapped from the magnitude M on a 0-10 scale:

    Identity, AutoContrast, Equalize   no argument
    Brightness, Sharpness              factor = 0.1 + 1.8 * M / 10          (M = 5: 1.0, i.e. a no-op)
    ShearX, ShearY                     shear  = 0.3 * M / 10, random sign   (M = 5: +-0.15)
    TranslateX, TranslateY             offset = 10 * M / 10 pixels, random sign (M = 5: +-5 px, absolute
                                       pixels whatever the image size)
    Rotate                             angle  = 30 * M / 10 degrees, random sign (M = 5: +-15 degrees)

Geometric ops fill uncovered pixels with grey (128, 128, 128) and interpolate bilinearly. So with BLIP's
M = 5, Brightness and Sharpness (factor exactly 1.0) change nothing, like Identity.

Here ``BlipTrainTransform`` returns the augmented uint8 (S, S, 3) array; ToTensor and Normalize stay with
the backbone (``Backbone.pixels`` scales to [0, 1] and normalises with the backbone's mean and std).

Where this differs from BLIP, and why (each op was compared with BLIP's own functions, run with
opencv-python-headless 4.14, on random and smooth images; "same" below means bit-identical there):

- Randomness: every draw comes from the ``rng`` argument. BLIP uses torch's global RNG for the crop and flip and
  numpy's global RNG for RandomAugment. With one Generator, a loader can seed each sample and get the same
  output in any process or worker. The draws are of the same kind and come in the same order: the crop
  (area fraction, log aspect ratio, up to 10 tries, then top and left), the flip, the N op picks, then for
  each op its apply test and, if it is applied and signed, its sign. The streams differ, so a seed does not
  reproduce BLIP's exact outputs.
- Geometric ops (ShearX/Y, TranslateX/Y, Rotate): ``_warp`` reimplements ``cv2.warpAffine(INTER_LINEAR,
  BORDER_CONSTANT)`` in numpy. It builds the same matrices (float32 for shear and translate, as BLIP does;
  cv2's rotation about (W/2, H/2) in pixel indices, half a pixel off the true centre). It also copies cv2's
  fixed-point arithmetic: 1/32-pixel source positions, integer bilinear weights, and edge pixels that blend
  into the fill. Results are the same as cv2's. It costs more: tens of milliseconds for a 384 x 384 image on
  one core, where cv2 takes about one. PIL's ``Image.transform`` would be faster, but it truncates instead of
  rounding (0.5 grey levels darker on average, up to 7 levels off) and handles the edges differently.
- AutoContrast is PIL's ``ImageOps.autocontrast`` (cutoff 0, per channel), which BLIP's docstring says it
  implements. BLIP's code does not: it computes ``offset = -low * scale`` with ``low`` a numpy uint8, whose
  negation wraps (-40 becomes 216). So every channel whose minimum is above 0 comes out entirely 255, and only
  channels that already reach 0 are stretched. This module does not reproduce that bug. Its lookup table is
  the exact ``(v - lo) * 255 // (hi - lo)``. PIL computes ``int(v * scale + offset)`` in floating point, which
  sometimes truncates an exact integer k to k - 1. In 15 % of (lo, hi) pairs that maps the maximum to 254
  instead of 255; this module always gives 255.
- Equalize: same (PIL's algorithm, as in BLIP; counted with int64 ``np.bincount`` rather than float32
  ``cv2.calcHist``, which would stop being exact above 2**24 pixels).
- Brightness: same.
- Sharpness: same for factors in [0.1, 1], BLIP's range up to M = 5 (at M = 5, factor 1, both return the
  input). For factors above 1 (M > 5), BLIP casts the blend to uint8 without clipping, so an overshoot wraps
  (256 becomes 0); here the blend is clipped first, as PIL's ``ImageEnhance.Sharpness`` does, and equals PIL.
  At factor exactly 0, BLIP returns cv2's smoothed image with reflected borders. Here the one-pixel border
  keeps the original values at every factor, as BLIP does for every other factor.
- Only the ten ops BLIP fine-tunes with are implemented (``BLIP_OPS``). BLIP's file also defines Solarize,
  Color, Contrast and Posterize; no BLIP config uses them.
- RandomResizedCrop follows torchvision's ``get_params`` exactly, including ``int(round(.))`` (banker's
  rounding) and the central-crop fallback. The crop is cut with PIL's ``crop`` and resized bicubically, as in
  torchvision's PIL path.
- ``test_transform`` returns the same array as ``suites.backbones.base._resize`` for PIL input (a bicubic
  square resize in PIL). The two must stay equal, and ``tests/test_transforms.py`` checks that. Its
  ``__test__ = False`` keeps pytest from collecting it when a test module imports it by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

MAX_LEVEL = 10  # magnitudes are on a 0..MAX_LEVEL scale
FILL = (128, 128, 128)  # BLIP's replace_value for pixels a geometric op uncovers
TRANSLATE_CONST = 10  # translation in pixels at magnitude MAX_LEVEL
BLIP_OPS = ("Identity", "AutoContrast", "Brightness", "Sharpness", "Equalize",
            "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
CROP_SCALE = (0.5, 1.0)  # BLIP's min_scale=0.5
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision's default
CROP_ATTEMPTS = 10  # torchvision's tries before the central-crop fallback

ImageLike = Image.Image | np.ndarray


# ---------------------------------------------------------------------------------------------- pixel ops
# Each takes a uint8 (H, W, 3) array and returns a uint8 (H, W, 3) array (possibly the input itself).


def identity(img: np.ndarray) -> np.ndarray:
    return img


def auto_contrast(img: np.ndarray) -> np.ndarray:
    """Stretch each channel linearly so that its darkest value becomes 0 and its brightest 255 (PIL's
    ``ImageOps.autocontrast`` with cutoff 0). A constant channel is left as it is."""
    out = np.empty_like(img)
    levels = np.arange(256, dtype=np.int64)
    for c in range(img.shape[2]):
        ch = img[..., c]
        lo, hi = int(ch.min()), int(ch.max())
        if hi <= lo:
            out[..., c] = ch
            continue
        table = np.clip((levels - lo) * 255 // (hi - lo), 0, 255).astype(np.uint8)
        out[..., c] = table[ch]
    return out


def equalize(img: np.ndarray) -> np.ndarray:
    """PIL's ``ImageOps.equalize``, per channel. The lookup table is floor((step // 2 + count below v) / step),
    where step = (pixels - pixels at the highest level present) // 255. A channel with step 0 (one level, or
    almost every pixel at its maximum) is left as it is."""
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        ch = img[..., c]
        hist = np.bincount(ch.ravel(), minlength=256).astype(np.int64)
        present = hist[hist > 0]
        step = (int(present.sum()) - int(present[-1])) // 255
        if step == 0:
            out[..., c] = ch
            continue
        below = np.concatenate(([0], np.cumsum(hist[:-1])))  # pixels strictly darker than each level
        table = np.clip((step // 2 + below) // step, 0, 255).astype(np.uint8)
        out[..., c] = table[ch]
    return out


def brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """v -> trunc(clip(v * factor, 0, 255)) in float32, as BLIP computes it (equal to PIL's Brightness, a blend
    with black)."""
    table = np.clip(np.arange(256, dtype=np.float32) * np.float32(factor), 0, 255).astype(np.uint8)
    return table[img]


def sharpness(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with a smoothed copy: smooth + factor * (img - smooth), smooth the [[1,1,1],[1,5,1],[1,1,1]] / 13
    filter of the interior (rounded); factor 0 gives the smoothed image, 1 the input, > 1 sharpens. The
    one-pixel border is kept."""
    h, w = img.shape[:2]
    if factor == 1.0 or h < 3 or w < 3:
        return img
    x = img.astype(np.int32)
    window = sum(x[dy:h - 2 + dy, dx:w - 2 + dx] for dy in range(3) for dx in range(3))
    weighted = window + 4 * x[1:-1, 1:-1]  # centre weight 5
    smooth = ((2 * weighted + 13) // 26).astype(np.float32)  # round(weighted / 13); never a tie, 13 is odd
    out = img.astype(np.float32)
    out[1:-1, 1:-1] = smooth + np.float32(factor) * (out[1:-1, 1:-1] - smooth)
    return np.clip(out, 0, 255).astype(np.uint8)


def _cv2_inverse(forward: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """The destination -> source matrix (a00, a01, b0, a10, a11, b1), inverted the way ``cv2.invertAffineTransform``
    (and ``warpAffine``) invert it, in double precision."""
    m = np.asarray(forward, dtype=np.float64)
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    det = 1.0 / det if det != 0 else 0.0
    a00, a01, a10, a11 = m[1, 1] * det, -m[0, 1] * det, -m[1, 0] * det, m[0, 0] * det
    return a00, a01, -a00 * m[0, 2] - a01 * m[1, 2], a10, a11, -a10 * m[0, 2] - a11 * m[1, 2]


def _warp(img: np.ndarray, forward: np.ndarray, fill: Sequence[int] = FILL) -> np.ndarray:
    """``cv2.warpAffine(img, forward, (W, H), flags=INTER_LINEAR, borderValue=fill)``, in numpy, to the bit.

    ``forward`` is cv2's 2x3 matrix mapping a source pixel index (x, y) to its destination. Like cv2, each
    output pixel's source position is computed in 1/1024 pixel (row and column parts rounded half-to-even
    separately), rounded to 1/32 pixel, and interpolated bilinearly in fixed point (weights in 1/32 per axis,
    result rounded half up). Neighbours outside the image take ``fill`` (cv2's BORDER_CONSTANT), so edge pixels
    blend into the fill."""
    h, w = img.shape[:2]
    a00, a01, b0, a10, a11, b1 = _cv2_inverse(forward)
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)

    def fixed(row_coef, offset, col_coef):  # source coordinate in 1/32 pixel, (h, w) int64
        per_row = np.rint((row_coef * ys + offset) * 1024).astype(np.int64)[:, None]
        per_col = np.rint(col_coef * xs * 1024).astype(np.int64)[None, :]
        return (per_row + per_col + 16) >> 5

    qx, qy = fixed(a01, b0, a00), fixed(a11, b1, a10)
    wx, wy = (qx & 31).astype(np.int32)[..., None], (qy & 31).astype(np.int32)[..., None]
    x0, y0 = (qx >> 5) + 1, (qy >> 5) + 1  # indices into the image padded by one pixel of fill
    padded = np.empty((h + 2, w + 2, 3), dtype=np.uint8)
    padded[:] = np.asarray(fill, dtype=np.uint8)
    padded[1:-1, 1:-1] = img
    flat = padded.reshape(-1, 3)
    left, right = np.clip(x0, 0, w + 1), np.clip(x0 + 1, 0, w + 1)
    upper, lower = np.clip(y0, 0, h + 1) * (w + 2), np.clip(y0 + 1, 0, h + 1) * (w + 2)

    def row(base):  # 32 x the horizontal interpolation along one source row
        return (32 - wx) * np.take(flat, base + left, axis=0) + wx * np.take(flat, base + right, axis=0)

    return (((32 - wy) * row(upper) + wy * row(lower) + 512) >> 10).astype(np.uint8)


def shear_x(img: np.ndarray, shear: float, fill: Sequence[int] = FILL) -> np.ndarray:
    """(x, y) -> (x + shear * y, y): rows slide right in proportion to their index."""
    return _warp(img, np.array([[1, shear, 0], [0, 1, 0]], dtype=np.float32), fill)


def shear_y(img: np.ndarray, shear: float, fill: Sequence[int] = FILL) -> np.ndarray:
    """(x, y) -> (x, y + shear * x): columns slide down in proportion to their index."""
    return _warp(img, np.array([[1, 0, 0], [shear, 1, 0]], dtype=np.float32), fill)


def translate_x(img: np.ndarray, pixels: float, fill: Sequence[int] = FILL) -> np.ndarray:
    """(x, y) -> (x - pixels, y): positive moves the content left (BLIP's and PIL's sign)."""
    return _warp(img, np.array([[1, 0, -pixels], [0, 1, 0]], dtype=np.float32), fill)


def translate_y(img: np.ndarray, pixels: float, fill: Sequence[int] = FILL) -> np.ndarray:
    """(x, y) -> (x, y - pixels): positive moves the content up."""
    return _warp(img, np.array([[1, 0, 0], [0, 1, -pixels]], dtype=np.float32), fill)


def rotate(img: np.ndarray, degrees: float, fill: Sequence[int] = FILL) -> np.ndarray:
    """Rotate counter-clockwise (as displayed) by ``degrees`` about (W/2, H/2) in pixel indices
    (``cv2.getRotationMatrix2D``'s centre), keeping the size."""
    h, w = img.shape[:2]
    cx, cy = w / 2.0, h / 2.0
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    forward = np.array([[cos, sin, (1.0 - cos) * cx - sin * cy],
                        [-sin, cos, sin * cx + (1.0 - cos) * cy]])
    return _warp(img, forward, fill)


# ------------------------------------------------------------------------------ magnitude -> op argument


def enhance_level(magnitude: float) -> float:
    return magnitude / MAX_LEVEL * 1.8 + 0.1


def shear_level(magnitude: float) -> float:
    return magnitude / MAX_LEVEL * 0.3


def translate_level(magnitude: float) -> float:
    return magnitude / MAX_LEVEL * TRANSLATE_CONST


def rotate_level(magnitude: float) -> float:
    return magnitude / MAX_LEVEL * 30.0


@dataclass(frozen=True)
class Op:
    name: str
    apply: Callable[..., np.ndarray]
    level: Callable[[float], float] | None = None  # magnitude -> argument; None: the op takes none
    signed: bool = False  # the argument is negated with probability 1/2


OPS: dict[str, Op] = {op.name: op for op in (
    Op("Identity", identity),
    Op("AutoContrast", auto_contrast),
    Op("Equalize", equalize),
    Op("Brightness", brightness, enhance_level),
    Op("Sharpness", sharpness, enhance_level),
    Op("ShearX", shear_x, shear_level, signed=True),
    Op("ShearY", shear_y, shear_level, signed=True),
    Op("TranslateX", translate_x, translate_level, signed=True),
    Op("TranslateY", translate_y, translate_level, signed=True),
    Op("Rotate", rotate, rotate_level, signed=True),
)}


def op_argument(name: str, magnitude: float, rng: np.random.Generator) -> float | None:
    """The argument op ``name`` gets at ``magnitude``: None for ops without one; a sign drawn from ``rng``
    (one draw) for signed ops."""
    op = OPS[name]
    if op.level is None:
        return None
    value = op.level(magnitude)
    if op.signed and rng.random() < 0.5:
        value = -value
    return value


def apply_op(img: np.ndarray, name: str, argument: float | None = None) -> np.ndarray:
    op = OPS[name]
    return op.apply(img) if argument is None else op.apply(img, argument)


@dataclass(frozen=True)
class RandomAugment:
    """BLIP's RandomAugment: ``n_ops`` ops drawn uniformly with replacement from ``ops``, each applied with
    probability ``prob`` at ``magnitude`` (0..10)."""

    n_ops: int = 2
    magnitude: float = 5
    ops: tuple[str, ...] = BLIP_OPS
    prob: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))
        unknown = [name for name in self.ops if name not in OPS]
        if unknown:
            raise ValueError(f"unknown augmentation ops {unknown}; known: {sorted(OPS)}")
        if not self.ops and self.n_ops:
            raise ValueError("RandomAugment needs at least one op to draw from")
        if self.n_ops < 0:
            raise ValueError(f"n_ops must be >= 0, got {self.n_ops}")
        if not 0 <= self.magnitude <= MAX_LEVEL:
            raise ValueError(f"magnitude must be in [0, {MAX_LEVEL}], got {self.magnitude}")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {self.prob}")

    def sample(self, rng: np.random.Generator) -> list[tuple[str, float | None]]:
        """The ops to apply, in order, with their arguments (ops that lost their coin flip are left out)."""
        picks = rng.integers(len(self.ops), size=self.n_ops) if self.n_ops else ()
        chosen = []
        for i in picks:
            if rng.random() > self.prob:  # BLIP: `if np.random.random() > prob: continue`
                continue
            name = self.ops[int(i)]
            chosen.append((name, op_argument(name, self.magnitude, rng)))
        return chosen

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for name, argument in self.sample(rng):
            img = apply_op(img, name, argument)
        return img


# ------------------------------------------------------------------------------------ crop, flip, resize


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale: tuple[float, float] = CROP_SCALE,
                            ratio: tuple[float, float] = CROP_RATIO) -> tuple[int, int, int, int]:
    """(left, top, w, h) of torchvision's RandomResizedCrop box in a ``width`` x ``height`` image.

    Up to 10 tries: area fraction ~ U(scale), log aspect ratio (w / h) ~ U(log ratio), sides rounded with
    Python's ``round``; the first box that fits is placed uniformly (top drawn before left). If none fits, the
    whole image, or its central crop at the nearest ratio bound when the image's own ratio is outside
    ``ratio``. Accepted boxes are biased to smaller areas (large ones fit less often), so the mean area
    fraction sits below the mean of ``scale``."""
    if width < 1 or height < 1:
        raise ValueError(f"image must be at least 1x1, got {width}x{height}")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must satisfy 0 < min <= max, got {scale}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(CROP_ATTEMPTS):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def random_resized_crop(image: Image.Image, size: int, rng: np.random.Generator,
                        scale: tuple[float, float] = CROP_SCALE,
                        ratio: tuple[float, float] = CROP_RATIO) -> Image.Image:
    """Crop ``random_resized_crop_box`` out of ``image`` and resize it bicubically to ``size`` x ``size``."""
    left, top, w, h = random_resized_crop_box(image.width, image.height, rng, scale, ratio)
    return image.crop((left, top, left + w, top + h)).resize((size, size), Image.Resampling.BICUBIC)


def random_horizontal_flip(image: Image.Image, rng: np.random.Generator, p: float = 0.5) -> Image.Image:
    """Mirror left-right with probability ``p`` (one draw)."""
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < p else image


def to_rgb_image(image: ImageLike) -> Image.Image:
    """An RGB PIL image from a PIL image of any mode or a uint8 (H, W, 3) or (H, W) array."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"expected a uint8 (H, W, 3) or (H, W) array, got {arr.dtype} {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")


def test_transform(image: ImageLike, image_size: int) -> np.ndarray:
    """BLIP's test transform up to ToTensor: a bicubic resize to (image_size, image_size) -> uint8 (S, S, 3).
    For PIL input this equals ``suites.backbones.base._resize``; keep the two the same."""
    return np.array(to_rgb_image(image).resize((image_size, image_size), Image.Resampling.BICUBIC))


test_transform.__test__ = False  # not a pytest test, even when imported into a test module


@dataclass(frozen=True)
class BlipTrainTransform:
    """BLIP's training transform up to ToTensor: RandomResizedCrop(image_size, scale, BICUBIC),
    RandomHorizontalFlip(0.5), RandomAugment(n_ops, magnitude, ops). Call it with a PIL image or a uint8
    (H, W, 3) array and a Generator; it returns a new uint8 (image_size, image_size, 3) array. The result
    depends only on the image and the Generator's state."""

    image_size: int
    scale: tuple[float, float] = CROP_SCALE
    n_ops: int = 2
    magnitude: float = 5
    ops: tuple[str, ...] = BLIP_OPS
    ratio: tuple[float, float] = CROP_RATIO
    augment: RandomAugment = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        object.__setattr__(self, "scale", tuple(self.scale))
        object.__setattr__(self, "ratio", tuple(self.ratio))
        object.__setattr__(self, "ops", tuple(self.ops))
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must satisfy 0 < min <= max, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")
        object.__setattr__(self, "augment", RandomAugment(self.n_ops, self.magnitude, self.ops))

    def __call__(self, image: ImageLike, rng: np.random.Generator) -> np.ndarray:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        pil = random_resized_crop(to_rgb_image(image), self.image_size, rng, self.scale, self.ratio)
        pil = random_horizontal_flip(pil, rng)
        return np.ascontiguousarray(self.augment(np.array(pil), rng))


def augmented(images, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """A training batch of images (PIL or uint8 arrays) through ``BlipTrainTransform`` -> uint8 (B, S, S, 3)."""
    transform = BlipTrainTransform(image_size)
    return np.stack([transform(image, rng) for image in images])
