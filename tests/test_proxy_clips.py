"""The synthetic clip world behind proxy-msrvtt and proxy-didemo."""

import numpy as np

from aurora.registry import BENCHMARKS
from suites.proxy import clips, world
from suites.proxy.pretrain import tokenizer


def _pairs(n=40, n_objects=2, seed=0):
    rng = np.random.default_rng(seed)
    return [clips.sample_clip_group(rng, n_objects) for _ in range(n)]


def test_groups_of_two_share_objects_and_homes_but_not_motion():
    for a, b in _pairs():
        assert [m.obj for m in a.movers] == [m.obj for m in b.movers]
        assert [m.motion for m in a.movers] != [m.motion for m in b.movers]


def test_objects_never_share_a_cell():
    for clip in (c for pair in _pairs(n_objects=3) for c in pair):
        for t in range(8):
            cells = [m.cell_at(t, 8) for m in clip.movers]
            assert len(set(cells)) == len(cells)


def test_motion_is_visible_only_across_frames():
    obj = world.Obj("circle", "red", "large", 4)
    shift = world.Shift()
    still = clips.render_clip(clips.Clip((clips.Mover(obj, "still"),)), 7, shift)
    across = clips.render_clip(clips.Clip((clips.Mover(obj, "across"),)), 7, shift)
    backwards = clips.render_clip(clips.Clip((clips.Mover(obj, "across", reverse=True),)), 7, shift)
    assert still.shape == (8, 48, 48, 3) and still.dtype == np.uint8
    assert np.array_equal(still[4], across[4])  # the mover passes through its home cell: one frame can match
    assert not np.array_equal(still, across)
    # reversed travel gives the same set of frames: direction is invisible to an order-blind model
    assert set(map(bytes, across)) == set(map(bytes, backwards))


def test_captions_are_true_of_their_clip_and_fit_the_tokenizer():
    rng = np.random.default_rng(1)
    tok = tokenizer()
    for clip in (c for pair in _pairs(n_objects=3) for c in pair):
        for style in ("all", "count", "one", "paragraph"):
            cap = clips.caption(clip, rng, world.Shift(), style)
            assert cap.facts <= clips.clip_facts(clip)
            assert len(cap.text.split()) <= 30  # the proxy backbone reads 32 tokens with [CLS] and [SEP]
            assert {w for w in cap.text.split() if w not in tok.token_to_id} <= {"moves", "stays", "between"}


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
    objective = bench.objective(type("B", (), {"temp": 0.07})(), type("C", (), {"loss": None})())
    batch = next(objective.batches(train, 6, np.random.default_rng(0)))
    clip_of = train.txt2img[batch].reshape(2, 3)  # (groups, group mates)
    assert (clip_of[:, 0] % 3 == 0).all() and (clip_of == clip_of[:, :1] + np.arange(3)).all()


def test_groups_share_objects_and_differ_in_motion():
    rng = np.random.default_rng(3)
    for n_objects, size in ((1, 3), (2, 3), (3, 2)):
        group = clips.sample_clip_group(rng, n_objects, size)
        assert len({tuple(m.obj for m in c.movers) for c in group}) == 1
        assert len({tuple(m.motion for m in c.movers) for c in group}) == size


def test_one_frame_carries_no_motion_word():
    """Captions name no place, so no single frame can refute one: the cells a still object and movers along
    either axis occupy overlap, and only the set of cells over frames differs."""
    rng = np.random.default_rng(0)
    clip = clips.sample_clip_group(rng, 1, 3)[0]
    for style in ("all", "count", "one", "paragraph"):
        words = set(clips.caption(clip, rng, world.Shift(), style).text.split())
        assert not words & {"center", "middle", "corner"} and "at" not in words
