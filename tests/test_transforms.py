"""BLIP's train/test image transforms (suites/tasks/transforms.py): determinism from the Generator alone, the
RandomResizedCrop box and its statistics, the flip, each RandomAugment op against its definition (and PIL
where PIL defines the same op), magnitude mapping, pickling and input kinds."""

import ast
import hashlib
import inspect
import math
import pickle
import random

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from suites.tasks import transforms as T


def _photo(h=48, w=64, seed=0):
    """A textured, left-right asymmetric uint8 (h, w, 3) image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) % 64 * 4], axis=-1)
    return np.clip(base + rng.normal(0, 12, size=(h, w, 3)), 0, 255).astype(np.uint8)


def _rngs(n, seed=0):
    return [np.random.default_rng([seed, i]) for i in range(n)]


# ------------------------------------------------------------------------------------ the whole transform


def test_same_seed_same_output_and_different_seeds_differ():
    transform = T.BlipTrainTransform(32)
    image = _photo()
    for seed in range(8):
        a = transform(image, np.random.default_rng(seed))
        b = transform(image, np.random.default_rng(seed))
        np.testing.assert_array_equal(a, b)
    outs = [transform(image, np.random.default_rng(seed)).tobytes() for seed in range(8)]
    assert len(set(outs)) == len(outs)


@pytest.mark.parametrize("image", [
    Image.fromarray(_photo(48, 64)),
    _photo(64, 48),
    Image.fromarray(_photo(30, 30)).convert("L"),
    Image.fromarray(_photo(30, 30)).convert("RGBA"),
    _photo(30, 30)[..., 0],
    _photo(1, 1),
    _photo(2, 5),
    _photo(300, 20),
], ids=["pil-rgb", "numpy", "pil-L", "pil-RGBA", "numpy-2d", "1x1", "2x5", "very-tall"])
@pytest.mark.parametrize("size", [1, 24])
def test_output_shape_dtype(image, size):
    out = T.BlipTrainTransform(size)(image, np.random.default_rng(3))
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous and out.flags.writeable


def test_pil_and_numpy_input_agree_and_input_is_untouched():
    transform = T.BlipTrainTransform(24)
    arr = _photo()
    copy = arr.copy()
    for seed in range(6):
        from_pil = transform(Image.fromarray(arr), np.random.default_rng(seed))
        from_np = transform(arr, np.random.default_rng(seed))
        np.testing.assert_array_equal(from_pil, from_np)
    np.testing.assert_array_equal(arr, copy)
    gray = _photo()[..., 1]
    np.testing.assert_array_equal(transform(gray, np.random.default_rng(0)),
                                  transform(Image.fromarray(gray, "L"), np.random.default_rng(0)))


def test_bad_inputs_are_refused():
    transform = T.BlipTrainTransform(8)
    with pytest.raises(ValueError, match="uint8"):
        transform(_photo().astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        transform(np.zeros((4, 4, 4), np.uint8), np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        transform(_photo(), np.random.RandomState(0))
    with pytest.raises(TypeError, match="Generator"):
        transform(_photo(), 0)
    with pytest.raises(ValueError, match="unknown augmentation ops"):
        T.BlipTrainTransform(8, ops=("Identity", "Solarize"))
    with pytest.raises(ValueError, match="magnitude"):
        T.BlipTrainTransform(8, magnitude=11)
    with pytest.raises(ValueError, match="scale"):
        T.BlipTrainTransform(8, scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="image_size"):
        T.BlipTrainTransform(0)


def test_pickle_round_trip():
    transform = T.BlipTrainTransform(24, scale=[0.6, 1.0], n_ops=3, magnitude=7, ops=["Rotate", "Equalize"])
    clone = pickle.loads(pickle.dumps(transform))
    assert clone == transform and repr(clone) == repr(transform)
    assert clone.scale == (0.6, 1.0) and clone.ops == ("Rotate", "Equalize")
    assert clone.augment == T.RandomAugment(3, 7, ("Rotate", "Equalize"))
    for seed in range(4):
        np.testing.assert_array_equal(clone(_photo(), np.random.default_rng(seed)),
                                      transform(_photo(), np.random.default_rng(seed)))


def test_composition_order_crop_flip_augment():
    """The transform is crop -> flip -> RandomAugment, drawing from one Generator in that order."""
    transform = T.BlipTrainTransform(20)
    image = Image.fromarray(_photo())
    for seed in range(10):
        rng = np.random.default_rng(seed)
        left, top, w, h = T.random_resized_crop_box(image.width, image.height, rng)
        step = image.crop((left, top, left + w, top + h)).resize((20, 20), Image.Resampling.BICUBIC)
        step = T.random_horizontal_flip(step, rng)
        expected = T.RandomAugment()(np.array(step), rng)
        np.testing.assert_array_equal(transform(image, np.random.default_rng(seed)), expected)


def test_no_global_random_state_is_used_or_touched():
    source = inspect.getsource(T)
    tree = ast.parse(source)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not imported & {"random", "torch", "torchvision", "cv2"}
    np_random_uses = {node.attr for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                      and node.value.attr == "random"}
    assert np_random_uses <= {"Generator"}, np_random_uses

    np.random.seed(123)
    random.seed(123)
    np_state, py_state = np.random.get_state(), random.getstate()
    transform = T.BlipTrainTransform(16)
    first = [transform(_photo(), np.random.default_rng(s)) for s in range(5)]
    after = np.random.get_state()
    assert py_state == random.getstate()
    assert all((a == b).all() if isinstance(a, np.ndarray) else a == b for a, b in zip(np_state, after))
    np.random.seed(999)
    random.seed(999)
    again = [transform(_photo(), np.random.default_rng(s)) for s in range(5)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_flip_about_half_the_time_through_the_transform():
    # A left-to-right ramp: any crop keeps it increasing unless it was mirrored (crops span >= 0.61 of the width).
    ramp = np.repeat(np.repeat(np.linspace(0, 255, 64).astype(np.uint8)[None, :, None], 48, 0), 3, 2)
    transform = T.BlipTrainTransform(16, n_ops=0)
    flips = 0
    for rng in _rngs(600, seed=1):
        out = transform(ramp, rng).astype(int)
        assert out[:, 0].mean() != out[:, -1].mean()
        flips += out[:, 0].mean() > out[:, -1].mean()
    assert abs(flips / 600 - 0.5) < 0.08  # sd 0.02


def test_random_horizontal_flip_rate_and_mirror():
    image = Image.fromarray(_photo(8, 12))
    mirrored = np.fliplr(np.asarray(image))
    rng = np.random.default_rng(5)
    flips = 0
    for _ in range(2000):
        out = np.asarray(T.random_horizontal_flip(image, rng))
        if (out == mirrored).all():
            flips += 1
        else:
            np.testing.assert_array_equal(out, np.asarray(image))
    assert abs(flips - 1000) < 100  # sd 22
    assert all(T.random_horizontal_flip(image, np.random.default_rng(s), p=0.0) is image for s in range(20))


# ----------------------------------------------------------------------------------- RandomResizedCrop box


def _rounding_safe(box, width, height, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)):
    """Whether (w, h) can come from an area fraction in ``scale`` and an aspect in ``ratio`` once each side is
    rounded to the nearest integer: |w - sqrt(a r)| <= 1/2 and |h - sqrt(a / r)| <= 1/2."""
    _, _, w, h = box
    area = width * height
    lowest = scale[0] * area <= w * h + (w + h) / 2 + 0.25
    highest = (w - 0.5) * (h - 0.5) <= scale[1] * area + 1e-9
    return lowest and highest and (w - 0.5) / (h + 0.5) <= ratio[1] and (w + 0.5) / (h - 0.5) >= ratio[0]


@pytest.mark.parametrize("width,height", [(512, 512), (640, 480), (480, 640), (800, 500), (333, 517), (40, 30)])
def test_crop_box_inside_and_within_scale_and_ratio(width, height):
    """For images whose own aspect ratio is within (3/4, 4/3), or close enough that the fallback keeps more than
    half the area, every box (sampled or fallback) must satisfy the scale and ratio bounds."""
    rng = np.random.default_rng(11)
    for _ in range(500):
        box = T.random_resized_crop_box(width, height, rng)
        left, top, w, h = box
        assert all(isinstance(v, int) for v in box)
        assert 0 <= left and 0 <= top and 1 <= w and 1 <= h and left + w <= width and top + h <= height
        assert _rounding_safe(box, width, height), box
        if width * height > 10_000:  # rounding is below a percent here
            assert 0.49 <= w * h / (width * height) <= 1.0
            assert 0.74 <= w / h <= 1.34


@pytest.mark.parametrize("width,height,expected", [
    (1000, 100, (433, 0, 133, 100)),  # too wide for any (0.5, 1) x (3/4, 4/3) box: central crop at ratio 4/3
    (100, 1000, (0, 433, 100, 133)),  # too tall: central crop at ratio 3/4
    (1, 1, (0, 0, 1, 1)),
])
def test_crop_box_central_fallback(width, height, expected):
    rng = np.random.default_rng(0)
    assert {T.random_resized_crop_box(width, height, rng) for _ in range(50)} == {expected}


def test_crop_box_degenerate_ranges_and_validation():
    rng = np.random.default_rng(0)
    assert T.random_resized_crop_box(64, 64, rng, scale=(1.0, 1.0), ratio=(1.0, 1.0)) == (0, 0, 64, 64)
    boxes = {T.random_resized_crop_box(64, 64, rng, scale=(0.25, 0.25), ratio=(1.0, 1.0)) for _ in range(200)}
    assert {(w, h) for _, _, w, h in boxes} == {(32, 32)} and len(boxes) > 100  # the position varies
    for bad in [dict(scale=(0.0, 1.0)), dict(scale=(0.8, 0.5)), dict(ratio=(4 / 3, 3 / 4)), dict(ratio=(0, 1))]:
        with pytest.raises(ValueError):
            T.random_resized_crop_box(64, 64, rng, **bad)
    with pytest.raises(ValueError):
        T.random_resized_crop_box(0, 64, rng)


def _expected_crop_stats(width, height, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), attempts=10, n=200_001):
    """E[area fraction] and its sd for torchvision's sampling, ignoring the rounding of w and h.

    With u = log(w/h) ~ U(log ratio) and s ~ U(scale), a try fits iff w <= W and h <= H, i.e.
    s <= rho e^-u and s <= e^u / rho (rho = W / H). Integrate over u on a fine midpoint grid; after
    ``attempts`` misses the fallback box is used."""
    s0, s1 = scale
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    u = lo + (np.arange(n) + 0.5) * (hi - lo) / n
    rho = width / height
    cap = np.clip(np.minimum(s1, np.minimum(rho * np.exp(-u), np.exp(u) / rho)), s0, s1)
    p_fit = np.mean((cap - s0) / (s1 - s0))
    m1 = np.mean((cap ** 2 - s0 ** 2) / 2 / (s1 - s0)) / p_fit
    m2 = np.mean((cap ** 3 - s0 ** 3) / 3 / (s1 - s0)) / p_fit
    miss = (1 - p_fit) ** attempts
    fallback = _fallback_fraction(width, height, ratio)
    mean = (1 - miss) * m1 + miss * fallback
    second = (1 - miss) * m2 + miss * fallback ** 2
    return mean, math.sqrt(second - mean ** 2)


def _fallback_fraction(width, height, ratio):
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return round(width / ratio[0]) / height
    if in_ratio > ratio[1]:
        return round(height * ratio[1]) / width
    return 1.0


def test_expected_area_fraction_closed_form_for_a_square():
    """For a square image the accepted region is s <= e^-|u|, so
    E[s | fits] = (7/32 - a/4) / (1/2 - a) with a = log(4/3): about 0.6916, not the 0.75 of U(0.5, 1)."""
    a = math.log(4 / 3)
    closed = (7 / 32 - a / 4) / (1 / 2 - a)
    p_fit = (1 / 2 - a) / (a * 1.0)  # region area over the (2a x 0.5) rectangle
    miss = (1 - p_fit) ** 10
    mean, _ = _expected_crop_stats(512, 512)
    assert mean == pytest.approx((1 - miss) * closed + miss, abs=1e-6)
    assert closed == pytest.approx(0.69156, abs=1e-4)


@pytest.mark.parametrize("width,height", [(512, 512), (640, 480), (800, 500)])
def test_crop_box_area_statistics_over_2000_draws(width, height):
    expected, sd = _expected_crop_stats(width, height)
    rng = np.random.default_rng(2024)
    boxes = [T.random_resized_crop_box(width, height, rng) for _ in range(2000)]
    fractions = np.array([w * h / (width * height) for _, _, w, h in boxes])
    tolerance = 4.5 * sd / math.sqrt(2000) + 0.002  # sampling error + what the ignored rounding can shift
    assert abs(fractions.mean() - expected) < tolerance, (fractions.mean(), expected, tolerance)
    assert abs(fractions.std() - sd) < 0.02
    assert expected < 0.75 - 3 * tolerance  # the rejection bias is large enough to be seen
    # the position is uniform over the free range
    free = [(left / (width - w)) for left, _, w, _ in boxes if width > w]
    assert abs(np.mean(free) - 0.5) < 0.03
    if width == height:  # log aspect ratio symmetric about 0
        assert abs(np.mean([math.log(w / h) for _, _, w, h in boxes])) < 0.01


# -------------------------------------------------------------------------------------------- the ops


def _dot(h=64, w=64, x=20, y=20, value=255):
    img = np.zeros((h, w, 3), np.uint8)
    img[y, x] = value
    return img


def _only_bright(img):
    ys, xs = np.nonzero(img[..., 0] == 255)
    return list(zip(xs.tolist(), ys.tolist()))


def test_identity_returns_input():
    img = _photo()
    assert T.apply_op(img, "Identity") is img


def test_auto_contrast_stretches_each_channel_to_full_range():
    rng = np.random.default_rng(0)
    img = np.stack([rng.integers(60, 121, (32, 32)), rng.integers(0, 41, (32, 32)),
                    np.full((32, 32), 77)], axis=-1).astype(np.uint8)
    out = T.apply_op(img, "AutoContrast")
    for c in (0, 1):
        assert out[..., c].min() == 0 and out[..., c].max() == 255
        order = np.argsort(img[..., c].ravel(), kind="stable")
        assert (np.diff(out[..., c].ravel()[order].astype(int)) >= 0).all()  # order preserving
    np.testing.assert_array_equal(out[..., 2], img[..., 2])  # constant channel unchanged
    full = _photo()
    full[0, 0], full[0, 1] = 0, 255
    np.testing.assert_array_equal(T.auto_contrast(full), full)  # already full range: no change


def test_auto_contrast_does_not_copy_blips_uint8_overflow():
    """BLIP negates a uint8 minimum (``-low * scale``), which wraps, so a channel whose minimum is above 0 comes
    out all 255. Ours stretches it, as PIL and BLIP's own docstring say."""
    img = np.dstack([np.array([[40, 60], [80, 100]])] * 3).astype(np.uint8)
    assert T.auto_contrast(img)[..., 0].tolist() == [[0, 85], [170, 255]]


def test_auto_contrast_is_pil_up_to_its_float_truncation():
    """PIL (and BLIP) compute int(v * scale + offset) in floating point, which truncates some exact integers
    k to k - 1; ours is the exact floor((v - lo) * 255 / (hi - lo)). They differ nowhere else."""
    rng = np.random.default_rng(1)
    seen_difference = False
    for _ in range(40):
        lo, hi = sorted(rng.integers(0, 256, 2))
        img = rng.integers(lo, hi + 1, (24, 24, 3), dtype=np.uint8)
        ours = T.auto_contrast(img).astype(int)
        pil = np.asarray(ImageOps.autocontrast(Image.fromarray(img))).astype(int)
        diff = ours - pil
        assert set(np.unique(diff)) <= {0, 1}
        for c in range(3):
            ch = img[..., c].astype(int)
            clo, chi = ch.min(), ch.max()
            where = diff[..., c] == 1
            if chi > clo and where.any():
                seen_difference = True
                assert ((ch[where] - clo) * 255 % (chi - clo) == 0).all()  # the exact value is an integer
    assert seen_difference


def test_equalize_matches_pil_and_flattens_the_histogram():
    rng = np.random.default_rng(2)
    img = np.clip(rng.normal(100, 8, (128, 128, 3)), 0, 255).astype(np.uint8)
    out = T.apply_op(img, "Equalize")
    np.testing.assert_array_equal(out, np.asarray(ImageOps.equalize(Image.fromarray(img))))
    for c in range(3):
        ch = out[..., c].ravel()
        assert ch.min() <= 5 and ch.max() >= 245  # was ~ 70..130
        for v in np.unique(ch):  # the CDF below each output level is ~ level / 255: a flat histogram
            assert abs(np.mean(ch < v) - v / 255) < 0.01
    for other in (_photo(), rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)):
        np.testing.assert_array_equal(T.equalize(other), np.asarray(ImageOps.equalize(Image.fromarray(other))))
    flat = np.full((8, 8, 3), 90, np.uint8)
    np.testing.assert_array_equal(T.equalize(flat), flat)


def test_brightness_factor_range_and_values():
    assert T.enhance_level(0) == pytest.approx(0.1)
    assert T.enhance_level(5) == pytest.approx(1.0)
    assert T.enhance_level(10) == pytest.approx(1.9)
    img = _photo()
    np.testing.assert_array_equal(T.brightness(img, T.enhance_level(5)), img)  # BLIP's M=5: a no-op
    np.testing.assert_array_equal(T.brightness(img, 0.5), img // 2)
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
    bright = T.brightness(levels, 1.9)
    assert (bright[levels >= 135] == 255).all() and bright[levels == 100][0] == 190
    for factor in (0.1, 0.5, 1.3, 1.9):
        np.testing.assert_array_equal(T.brightness(img, factor),
                                      np.asarray(ImageEnhance.Brightness(Image.fromarray(img)).enhance(factor)))


def test_sharpness_matches_pil_and_does_not_wrap():
    img = _photo()
    assert T.sharpness(img, T.enhance_level(5)) is img  # factor 1.0 (BLIP's M=5): a no-op
    for factor in (0.0, 0.1, 0.5, 1.5, 1.9):
        np.testing.assert_array_equal(T.sharpness(img, factor),
                                      np.asarray(ImageEnhance.Sharpness(Image.fromarray(img)).enhance(factor)))
    smooth = T.sharpness(img, 0.0)
    np.testing.assert_array_equal(smooth[0], img[0])  # border kept
    window = img[9:12, 9:12, 0].astype(int)
    assert smooth[10, 10, 0] == round((window.sum() + 4 * window[1, 1]) / 13)
    spike = np.full((5, 5, 3), 200, np.uint8)
    spike[2, 2] = 255
    assert (T.sharpness(spike, 1.9)[2, 2] == 255).all()  # BLIP's unclipped cast would wrap this to ~40
    tiny = _photo(2, 7)
    assert T.sharpness(tiny, 0.0) is tiny


@pytest.mark.parametrize("name", ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"])
def test_geometric_ops_at_magnitude_zero_are_the_identity(name):
    img = _photo()
    for rng in _rngs(4):  # both signs of 0
        argument = T.op_argument(name, 0, rng)
        assert argument == 0
        np.testing.assert_array_equal(T.apply_op(img, name, argument), img)


def test_shear_moves_a_dot_as_cv2_would():
    # cv2.warpAffine forward map: ShearX (x, y) -> (x + f y, y); ShearY (x, y) -> (x, y + f x)
    assert _only_bright(T.shear_x(_dot(x=20, y=20), 0.25)) == [(25, 20)]
    assert _only_bright(T.shear_x(_dot(x=30, y=20), -0.25)) == [(25, 20)]
    assert _only_bright(T.shear_y(_dot(x=20, y=20), 0.25)) == [(20, 25)]
    sheared = T.shear_x(np.zeros((64, 64, 3), np.uint8), 0.15)
    assert (sheared[63, :9] == 128).all() and (sheared[0] == 0).all()  # uncovered pixels take the grey fill


def test_translate_moves_content_and_fills_grey():
    out = T.translate_x(_dot(x=30, y=20), 5)
    assert _only_bright(out) == [(25, 20)]  # positive offset: content moves left
    assert (out[:, -5:] == 128).all() and (out[:, :-5][out[:, :-5] != 255] == 0).all()
    out = T.translate_x(_dot(x=30, y=20), -5)
    assert _only_bright(out) == [(35, 20)] and (out[:, :5] == 128).all()
    out = T.translate_y(_dot(x=30, y=20), 5)
    assert _only_bright(out) == [(30, 15)] and (out[-5:] == 128).all()
    # half a pixel: the edge pixel blends half with the fill, as cv2's constant border does
    half = T.translate_x(np.zeros((8, 8, 3), np.uint8), 0.5)
    assert (half[:, -1] == 64).all() and (half[:, :-1] == 0).all()
    half = T.translate_y(np.zeros((8, 8, 3), np.uint8), -0.5)
    assert (half[0] == 64).all() and (half[1:] == 0).all()


# sha256 prefixes of BLIP's own shear/translate/rotate functions (cv2.warpAffine, opencv-python-headless 4.14,
# fill (128, 128, 128)) on _pattern(); the numpy warp reproduces them bit for bit.
CV2_GOLDEN = [
    ("ShearX", 0.15, "f515a4543319d712"),
    ("ShearX", -0.3, "58117aa3044b6b3c"),
    ("ShearY", 0.15, "7d4a484e70085265"),
    ("TranslateX", 0.3, "59d6d589525ac342"),
    ("TranslateY", -2.5, "ec5640cf3177edf2"),
    ("Rotate", 15.0, "74a685315fab8143"),
    ("Rotate", -15.0, "ad24493716aa0cb5"),
    ("Rotate", 4.5, "0b0cd8b811bfdc40"),
]


def _pattern():
    """A (29, 37, 3) high-frequency image from integer arithmetic alone (no RNG, no version drift)."""
    y, x, c = np.mgrid[0:29, 0:37, 0:3]
    return (((x * 37 + y * 91 + c * 53) ^ (x * y)) % 256).astype(np.uint8)


@pytest.mark.parametrize("name,argument,digest", CV2_GOLDEN)
def test_geometric_ops_are_bit_identical_to_blips_cv2(name, argument, digest):
    out = T.apply_op(_pattern(), name, argument)
    assert hashlib.sha256(out.tobytes()).hexdigest()[:16] == digest


def test_warp_rounds_to_nearest():
    """cv2 (and so BLIP) rounds the bilinear result; PIL's transform truncates (0.5 level darker on average)."""
    img = np.zeros((1, 4, 3), np.uint8)
    img[0, 1], img[0, 2], img[0, 3] = 255, 1, 3
    out = T.translate_x(img, 0.5, fill=(0, 0, 0))[0, :, 0]
    assert out.tolist() == [128, 128, 2, 2]  # 127.5, 128, 2, 1.5 rounded half up


def _centroid(img, cx, cy, radius):
    y, x = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    weight = img[..., 0].astype(float) * ((x - cx) ** 2 + (y - cy) ** 2 < radius ** 2)
    return (weight * x).sum() / weight.sum(), (weight * y).sum() / weight.sum()


@pytest.mark.parametrize("degrees", [15.0, -15.0, 30.0])
def test_rotate_turns_about_cv2_centre_counter_clockwise(degrees):
    assert _only_bright(T.rotate(_dot(x=32, y=32), degrees)) == [(32, 32)]  # cv2's centre (W/2, H/2) stays
    img = np.zeros((64, 64, 3), np.uint8)
    img[31:34, 51:54] = 255  # a blob centred 20 px right of the centre
    out = T.rotate(img, degrees)
    rad = math.radians(degrees)
    expected = (32 + 20 * math.cos(rad), 32 - 20 * math.sin(rad))  # image y points down: CCW as displayed
    assert _centroid(out, 32, 32, 28) == pytest.approx(expected, abs=0.1)
    assert (out[0, 0] == 128).all() and (out[-1, -1] == 128).all()  # corners uncovered -> grey


def test_magnitude_mapping():
    rng = np.random.default_rng(0)
    for name in ("Identity", "AutoContrast", "Equalize"):
        assert T.op_argument(name, 5, rng) is None
    expected = {("Brightness", 5): 1.0, ("Sharpness", 5): 1.0, ("Brightness", 10): 1.9, ("Sharpness", 0): 0.1,
                ("ShearX", 5): 0.15, ("ShearY", 10): 0.3, ("TranslateX", 5): 5.0, ("TranslateY", 10): 10.0,
                ("Rotate", 5): 15.0, ("Rotate", 10): 30.0}
    for (name, magnitude), value in expected.items():
        draws = [T.op_argument(name, magnitude, r) for r in _rngs(200)]
        assert all(abs(d) == pytest.approx(value) for d in draws), (name, magnitude)
        negative = np.mean([d < 0 for d in draws])
        if T.OPS[name].signed:
            assert 0.38 < negative < 0.62  # sd 0.035
        else:
            assert negative == 0


def test_random_augment_sampling_statistics():
    augment = T.RandomAugment(2, 5)
    counts = {name: 0 for name in T.BLIP_OPS}
    lengths = np.zeros(3)
    repeats = 0
    rng = np.random.default_rng(7)
    n = 4000
    for _ in range(n):
        chosen = augment.sample(rng)
        lengths[len(chosen)] += 1
        for name, _ in chosen:
            counts[name] += 1
        repeats += len(chosen) == 2 and chosen[0][0] == chosen[1][0]
    # each of the 2 picks applied with probability 1/2: 0, 1, 2 ops with 1/4, 1/2, 1/4
    np.testing.assert_allclose(lengths / n, [0.25, 0.5, 0.25], atol=0.03)
    applied = sum(counts.values())
    for name, count in counts.items():  # uniform over the 10 ops
        assert abs(count / applied - 0.1) < 0.02, name
    assert abs(repeats / n - 0.025) < 0.012  # drawn with replacement, as np.random.choice does
    assert T.RandomAugment(0).sample(rng) == []
    assert T.RandomAugment(5, prob=0.0).sample(rng) == []
    assert len(T.RandomAugment(5, prob=1.0).sample(rng)) == 5


def test_random_augment_applies_what_it_samples():
    img = _photo()
    augment = T.RandomAugment(3, 7)
    for seed in range(10):
        expected = img
        for name, argument in augment.sample(np.random.default_rng(seed)):
            expected = T.apply_op(expected, name, argument)
        np.testing.assert_array_equal(augment(img, np.random.default_rng(seed)), expected)


@pytest.mark.parametrize("name", T.BLIP_OPS)
def test_each_op_keeps_shape_and_dtype(name):
    img = _photo(33, 47)
    argument = T.op_argument(name, 7, np.random.default_rng(0))
    out = T.apply_op(img, name, argument)
    assert out.shape == img.shape and out.dtype == np.uint8


# ------------------------------------------------------------------------------------------ test transform


def test_test_transform_is_the_backbone_resize():
    from suites.backbones.base import _resize

    for image in (Image.fromarray(_photo(48, 64)), Image.fromarray(_photo(30, 30)).convert("L")):
        out = T.test_transform(image, 24)
        assert out.shape == (24, 24, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, _resize(image, 24))
    arr = _photo(50, 40)
    np.testing.assert_array_equal(T.test_transform(arr, 16), _resize(Image.fromarray(arr), 16))
    assert T.test_transform.__test__ is False
