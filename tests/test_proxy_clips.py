"""The synthetic clip world behind proxy-msrvtt and proxy-didemo."""

import numpy as np

from suites.benchmarks import BENCHMARKS
from suites.synthetic import clips, world
from suites.synthetic.pretrain import tokenizer


def _pairs(n=40, n_objects=2, seed=0):
    rng = np.random.default_rng(seed)
    return [clips.sample_clip_group(rng, n_objects) for _ in range(n)]


def test_groups_share_objects_and_differ_in_colour_programmes():
    rng = np.random.default_rng(3)
    for n_objects, size in ((1, 3), (2, 5), (3, 2)):
        group = clips.sample_clip_group(rng, n_objects, size)
        assert len({tuple((a.obj.shape, a.obj.size, a.obj.cell) for a in c.actors) for c in group}) == 1
        assert len({c.actors for c in group}) == size
        for clip in group:
            assert len({a.obj.shape for a in clip.actors}) == n_objects  # a shape names one object


def test_a_colour_change_is_visible_only_across_frames():
    shift = world.Shift()
    red, blue = world.Obj("circle", "red", "large", 4), world.Obj("circle", "blue", "large", 4)
    steady = clips.render_clip(clips.Clip((clips.Actor(red),)), 7, shift)
    steady_blue = clips.render_clip(clips.Clip((clips.Actor(blue),)), 7, shift)
    change = clips.render_clip(clips.Clip((clips.Actor(red, "blue"),)), 7, shift)
    backwards = clips.render_clip(clips.Clip((clips.Actor(blue, "red"),)), 7, shift)
    assert steady.shape == (8, 48, 48, 3) and steady.dtype == np.uint8
    # every single frame of the changing clip is a frame of one of the steady clips
    assert np.array_equal(change[:4], steady[:4]) and np.array_equal(change[4:], steady_blue[4:])
    assert not np.array_equal(change, steady) and not np.array_equal(change, steady_blue)
    # the reversed change gives the same set of frames: its direction is invisible to an order-blind model
    assert set(map(bytes, change)) == set(map(bytes, backwards))


def test_captions_name_both_colours_of_a_change_and_no_place():
    rng = np.random.default_rng(0)
    red = world.Obj("circle", "red", "large", 0)
    text = clips.caption(clips.Clip((clips.Actor(red, "blue"),)), rng, world.Shift(), "all").text
    assert text.split()[-4:] == ["between", "red", "and", "blue"]
    for clip in (c for pair in _pairs(n_objects=3) for c in pair):
        words = set(clips.caption(clip, rng, world.Shift(), "count").text.split())
        assert not words & {"left", "right", "top", "bottom", "center"}


def test_captions_are_true_of_their_clip_and_fit_the_tokenizer():
    rng = np.random.default_rng(1)
    tok = tokenizer()
    for clip in (c for pair in _pairs(n_objects=3) for c in pair):
        for style in ("all", "count", "one", "paragraph"):
            cap = clips.caption(clip, rng, world.Shift(), style)
            assert cap.facts <= clips.clip_facts(clip)
            assert len(cap.text.split()) <= 30  # the proxy backbone reads 32 tokens with [CLS] and [SEP]
            assert {w for w in cap.text.split() if w not in tok.token_to_id} <= {"changes", "stays", "between"}


def test_proxy_benchmarks_load_small():
    for name in ("proxy-msrvtt", "proxy-didemo"):
        train, val, test = BENCHMARKS.get(name)(train_clips=6, val_clips=4, test_clips=4).load()
        assert train.images.shape == (6, 8, 48, 48, 3) and train.frame_mode == "random"
        assert test.image_batch(np.arange(2)).shape == (2, 4, 48, 48, 3)
        assert len(test.texts) == 4  # one caption (or paragraph) per evaluation clip
        truth = train.truth(train.txt2img, np.arange(len(train.texts)))  # (texts, texts): own clip is true
        assert truth.diagonal().all()


def test_group_batches_hold_whole_groups():
    bench = BENCHMARKS.get("proxy-msrvtt")(train_clips=9, val_clips=3, test_clips=3, group=3, group_batches=True)
    train, _, _ = bench.load()
    objective = bench.objective(type("B", (), {"temp": 0.07})())
    batch = next(objective.batches(train, 6, np.random.default_rng(0)))
    clip_of = train.txt2img[batch].reshape(2, 3)  # (groups, group mates)
    assert (clip_of[:, 0] % 3 == 0).all() and (clip_of == clip_of[:, :1] + np.arange(3)).all()
