import numpy as np
import pytest

from suites.synthetic.tokenizer import WordTokenizer
from suites.synthetic.world import (
    BASE_TEMPLATES,
    COLORS,
    HELD_OUT_PAIRS,
    SHAPES,
    SYNONYMS,
    Caption,
    Shift,
    caption_true_of,
    describe,
    make_split,
    render,
    sample_scene,
    scene_facts,
    truth_matrix,
    vocabulary,
)

HARD = Shift(
    held_out_pairs=True,
    background="stripes",
    background_strength=1.0,
    noise=0.1,
    new_template_frac=1.0,
    synonym_frac=1.0,
)


@pytest.fixture(scope="module")
def pre():
    return make_split(3, 300, 5, Shift())


def _pairs(scenes):
    return [{o.key for o in s.objects} for s in scenes]


def _scenes(seed, n, shift):  # scenes without rendering: keeps the tests fast
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, shift) for _ in range(n)]


def _texts(seed, n, shift):
    rng = np.random.default_rng(seed)
    return [c.text for s in _scenes(seed, n, shift) for c in describe(s, rng, shift)]


def test_make_split_deterministic():
    a, b = make_split(7, 40, 3, HARD), make_split(7, 40, 3, HARD)
    assert np.array_equal(a.images, b.images) and a.texts == b.texts and a.scenes == b.scenes
    assert np.array_equal(a.txt2img, b.txt2img)
    c = make_split(8, 40, 3, HARD)
    assert not np.array_equal(a.images, c.images) and a.texts != c.texts


def test_split_shapes(pre):
    assert pre.images.shape == (300, 48, 48, 3) and pre.images.dtype == np.uint8
    assert len(pre.texts) == len(pre.captions) == 1500
    assert pre.txt2img.dtype == np.int64 and np.array_equal(pre.txt2img, np.repeat(np.arange(300), 5))
    assert make_split(0, 4, 2, Shift(), image_size=96).images.shape == (4, 96, 96, 3)


@pytest.mark.parametrize("shift", [Shift(), HARD, Shift(new_template_frac=0.5, synonym_frac=0.3)])
def test_captions_true_of_own_image(shift):
    sp = make_split(1, 120, 5, shift)
    m = truth_matrix(sp.scenes, sp.captions)  # (S, C)
    assert m.shape == (120, 600)
    assert m[sp.txt2img, np.arange(600)].all()
    # the inverted-index truth matrix agrees with the direct subset check
    for j in range(0, 600, 37):
        for i in range(0, 120, 11):
            assert m[i, j] == caption_true_of(sp.captions[j], sp.scenes[i])


def test_held_out_pairs():
    assert len(HELD_OUT_PAIRS) == 12
    assert {c for c, _ in HELD_OUT_PAIRS} == set(COLORS) and {s for _, s in HELD_OUT_PAIRS} == set(SHAPES)
    pre = _pairs(_scenes(2, 500, Shift()))
    assert all(not (p & HELD_OUT_PAIRS) for p in pre)
    held = _pairs(_scenes(2, 500, Shift(held_out_pairs=True)))
    assert all(p & HELD_OUT_PAIRS for p in held)
    assert any(p - HELD_OUT_PAIRS for p in held)  # seen pairs are still mixed in


def test_scene_invariants():
    rng = np.random.default_rng(0)
    for _ in range(300):
        s = sample_scene(rng, HARD)
        assert 1 <= len(s.objects) <= 3
        assert len({o.cell for o in s.objects}) == len({o.key for o in s.objects}) == len(s.objects)
        assert ("count", len(s.objects)) in scene_facts(s)


def test_vocabulary_covers_everything():
    vocab = set(vocabulary())
    assert vocabulary() == sorted(vocab)
    for shift in (Shift(), HARD, Shift(new_template_frac=1.0)):
        words = {w for t in _texts(5, 200, shift) for w in t.split()}
        assert words <= vocab and all(w.isalpha() and w.islower() for w in words)
    assert set(SYNONYMS.values()) <= vocab
    # synonyms are unseen: no base-template caption ever uses one
    base = {w for t in _texts(6, 300, Shift()) for w in t.split()}
    assert not base & set(SYNONYMS.values())


def test_new_templates_and_synonyms_keep_facts():
    rng = np.random.default_rng(1)
    s = sample_scene(rng, Shift())
    base = {c.template for c in describe(s, rng, Shift(), n=5)}
    assert base == set(BASE_TEMPLATES)
    new = describe(s, rng, Shift(new_template_frac=1.0, synonym_frac=1.0), n=5)
    assert not {c.template for c in new} & set(BASE_TEMPLATES)
    assert all(caption_true_of(c, s) for c in new)
    assert not caption_true_of(Caption("x", frozenset({("count", 9)})), s)


def test_captions_discriminative(pre):
    """Captions that mention every object (colour + shape) mostly pin down their image."""
    m = truth_matrix(pre.scenes, pre.captions)
    n_true = m.sum(0)
    full = np.array(
        [
            all(("obj", *o.key) in c.facts for o in pre.scenes[i].objects)
            for c, i in zip(pre.captions, pre.txt2img)
        ]
    )
    assert full.mean() > 0.5
    assert (n_true[full] <= 2).mean() > 0.8


def test_render_backgrounds_and_noise():
    s = sample_scene(np.random.default_rng(0), Shift())
    flat = render(s, np.random.default_rng(1), Shift(noise=0.0))
    stripes = render(s, np.random.default_rng(1), Shift(noise=0.0, background="stripes", background_strength=1.0))
    checker = render(s, np.random.default_rng(1), Shift(noise=0.0, background="checker", background_strength=1.0))
    assert flat.shape == (48, 48, 3) and flat.dtype == np.uint8
    assert flat.std() < stripes.std() and flat.std() < checker.std()
    # objects are drawn in saturated colours on grey: some pixel differs strongly across channels
    assert (flat.max(-1).astype(int) - flat.min(-1)).max() > 100
    with pytest.raises(ValueError):
        Shift(background="plaid")


def test_tokenizer():
    tok = WordTokenizer(vocabulary())
    assert tok.SPECIALS == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[ENC]", "[DEC]")
    ids = (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.enc_token_id, tok.dec_token_id)
    assert ids == (0, 1, 2, 3, 4, 5)
    assert tok.vocab_size == 6 + len(vocabulary())

    out = tok(["a red circle", "a blue square at the top left", "zzz"], max_length=24)
    assert out["input_ids"].shape == out["attention_mask"].shape == (3, 9)
    row = out["input_ids"][0].tolist()
    assert row[0] == tok.cls_token_id and row[4] == tok.sep_token_id and row[5:] == [0] * 4
    assert out["attention_mask"][0].tolist() == [1] * 5 + [0] * 4
    assert out["input_ids"][2, 1].item() == tok.unk_token_id
    assert tok.decode(out["input_ids"][1]) == "a blue square at the top left"

    long = tok(["a red circle " * 10], max_length=8)["input_ids"]
    assert long.shape == (1, 8) and long[0, -1].item() == tok.sep_token_id and long[0, 0].item() == tok.cls_token_id

    tok2 = WordTokenizer.from_dict(tok.to_dict())
    assert tok2.id_to_token == tok.id_to_token
    assert tok2(["a red circle"])["input_ids"].tolist() == tok(["a red circle"])["input_ids"].tolist()
