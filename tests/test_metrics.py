import numpy as np
import pytest

from suites.tasks.metrics import retrieval_recall


def test_perfect_scores_give_100():
    txt2img = np.array([0, 0, 1, 2])
    sims = (txt2img[None, :] == np.arange(3)[:, None]).astype(float)
    out = retrieval_recall(sims, txt2img)
    assert out == {k: 100.0 for k in out}
    assert list(out) == ["txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10", "r_mean"]


def test_image_to_text_takes_best_ranked_caption():
    # image 0 owns captions 0 and 1; caption 1 is ranked first, caption 0 last: TR@1 must count it.
    txt2img = np.array([0, 0, 1])
    sims = np.array([[0.0, 0.9, 0.5],
                     [0.1, 0.2, 0.8]])
    out = retrieval_recall(sims, txt2img)
    assert out["txt_r1"] == 100.0
    # text->image: caption 0 scores image 1 (0.1) above image 0 (0.0) -> miss at 1, hit at 5
    assert out["img_r1"] == pytest.approx(200 / 3)
    assert out["img_r5"] == 100.0


def test_hand_ranked_matrix():
    # 12 images, one caption each; the true image of caption t sits at rank t (0-based) for t < 12.
    n = 12
    sims = np.zeros((n, n))
    for t in range(n):
        order = [i for i in range(n) if i != t]
        order.insert(t, t)  # true image at position t
        for rank, img in enumerate(order):
            sims[img, t] = n - rank
    out = retrieval_recall(sims, np.arange(n))
    assert out["img_r1"] == pytest.approx(100 / 12)
    assert out["img_r5"] == pytest.approx(500 / 12)
    assert out["img_r10"] == pytest.approx(1000 / 12)


def test_ties_do_not_score_as_hits():
    out = retrieval_recall(np.zeros((20, 20)), np.arange(20))
    assert out["txt_r1"] == 0.0 and out["img_r10"] == 0.0


def test_separate_text_to_image_scores():
    txt2img = np.arange(2)
    i2t = np.eye(2)
    t2i = 1 - np.eye(2)
    out = retrieval_recall(i2t, txt2img, sims_t2i=t2i)
    assert out["txt_r1"] == 100.0 and out["img_r1"] == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="txt2img"):
        retrieval_recall(np.zeros((2, 3)), np.arange(2))
