"""How candidates past a query's ITC top-k are ranked after ITM re-ranking: "itc" continues ITC's order, "tied" is
BLIP's protocol (a -100 score matrix ranked by ``np.argsort(row)[::-1]``), checked against BLIP's code written
out with numpy."""

import numpy as np
import pytest
import torch

from suites.benchmarks import BENCHMARKS, RetrievalBenchmark
from suites.orchestration.experiments import groups, load
from suites.tasks.metrics import RECALL_KS, retrieval_recall
from suites.tasks.retrieval import RetrievalData, embed_split, evaluate, fused_cls, itm_logits, past_top_k_scores


def blip_score_matrices(sims: np.ndarray, itm: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """BLIP's ``evaluation``: float32 matrices of -100, each query's ITC top-k set to ITM + ITC.

    sims, itm: (n_img, n_txt) -> (n_img, n_txt) image->text and (n_txt, n_img) text->image scores."""
    i2t = np.full(sims.shape, -100.0, dtype=np.float32)
    for i, row in enumerate(sims.astype(np.float32)):
        top = np.argsort(-row, kind="stable")[:k]
        i2t[i, top] = itm[i, top] + row[top]
    t2i = np.full(sims.T.shape, -100.0, dtype=np.float32)
    for t, row in enumerate(sims.T.astype(np.float32)):
        top = np.argsort(-row, kind="stable")[:k]
        t2i[t, top] = itm[top, t] + row[top]
    return i2t, t2i


def blip_itm_eval(i2t: np.ndarray, t2i: np.ndarray, txt2img: np.ndarray) -> dict:
    """BLIP's ``itm_eval`` (and Aurora's video median rank), row by row as it is written there."""
    img2txt = [np.flatnonzero(txt2img == i) for i in range(len(i2t))]
    txt_ranks = np.zeros(len(i2t))
    for index, score in enumerate(i2t):
        inds = np.argsort(score)[::-1]
        txt_ranks[index] = min(np.where(inds == i)[0][0] for i in img2txt[index])
    img_ranks = np.zeros(len(t2i))
    for index, score in enumerate(t2i):
        inds = np.argsort(score)[::-1]
        img_ranks[index] = np.where(inds == txt2img[index])[0][0]
    out = {f"txt_r{k}": 100.0 * len(np.where(txt_ranks < k)[0]) / len(txt_ranks) for k in RECALL_KS}
    out |= {f"img_r{k}": 100.0 * len(np.where(img_ranks < k)[0]) / len(img_ranks) for k in RECALL_KS}
    out["img_r_mdr"] = np.median(img_ranks + 1)
    return out


def _ours(sims, itm, k, past_topk, txt2img):
    """The suite's path from the same similarities and ITM logits, at ITC weight 1 (BLIP's)."""
    sims_t = torch.from_numpy(sims)
    need_i2t = torch.zeros_like(sims_t, dtype=torch.bool).scatter_(1, sims_t.topk(k, dim=1).indices, True)
    need_t2i = torch.zeros_like(sims_t, dtype=torch.bool).scatter_(0, sims_t.topk(k, dim=0).indices, True)
    rerank = torch.where(need_i2t | need_t2i, torch.from_numpy(itm).double() + sims_t.double(), 0.0)
    i2t, t2i = (past_top_k_scores(rerank, need, sims_t, past_topk) for need in (need_i2t, need_t2i))
    return retrieval_recall(i2t, txt2img, sims_t2i=t2i, median_rank=True,
                            ties="argsort" if past_topk == "tied" else "pessimistic")


def _truth_just_past_top_k(n=40, k=8, seed=0):
    """n images with one caption each, every query's truth ITC's (k+1)-th candidate: outside the top-k, inside
    R@10. Circulant: sims[i, t] = f((t - i) mod n), so rows and columns hold the same values, f(0) the truth's."""
    rng = np.random.default_rng(seed)
    f = np.concatenate([[0.0], np.sort(rng.uniform(0.4, 0.9, k)), -np.sort(rng.uniform(0.1, 0.6, n - k - 1))])
    offset = (np.arange(n)[None, :] - np.arange(n)[:, None]) % n  # (n_img, n_txt)
    itm = rng.normal(0.0, 1.0, (n, n)).astype(np.float32)
    return f[offset].astype(np.float32), itm, np.arange(n)


def test_tied_differs_from_itc_at_recall_past_k_and_equals_blip():
    sims, itm, txt2img = _truth_just_past_top_k()
    k = 8
    itc = _ours(sims, itm, k, "itc", txt2img)
    tied = _ours(sims, itm, k, "tied", txt2img)
    assert itc["txt_r10"] == itc["img_r10"] == 100.0  # ITC's order past the top-8 keeps every truth in the top 10
    assert tied["txt_r10"] < 50.0 and tied["img_r10"] < 50.0  # BLIP: the truth is one of 32 tied candidates
    for key in ("txt_r1", "txt_r5", "img_r1", "img_r5"):  # within the top-k both are the re-ranked order
        assert itc[key] == tied[key] == 0.0
    blip = blip_itm_eval(*blip_score_matrices(sims, itm, k), txt2img)
    for key, value in blip.items():
        assert tied[key] == pytest.approx(value, abs=1e-12), key
    assert 1 <= tied["img_r_mdr"] <= sims.shape[0] and tied["img_r_mdr"] != itc["img_r_mdr"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tied_equals_blip_on_random_scores(seed):
    """Any similarities (COCO-like: several captions per image, rows far longer than numpy's 16-element
    insertion sort), any k."""
    rng = np.random.default_rng(seed)
    n_img, captions, k = 60, 3, [1, 5, 9][seed]
    txt2img = rng.permutation(np.repeat(np.arange(n_img), captions))
    sims = rng.normal(0, 0.2, (n_img, n_img * captions)).astype(np.float32)
    itm = rng.normal(0, 2.0, sims.shape).astype(np.float32)
    tied = _ours(sims, itm, k, "tied", txt2img)
    for key, value in blip_itm_eval(*blip_score_matrices(sims, itm, k), txt2img).items():
        assert tied[key] == pytest.approx(value, abs=1e-12), key


def test_evaluate_tied_is_blips_protocol_end_to_end(tiny):
    """The whole evaluation on a tiny model at BLIP's ITC weight 1 against BLIP's loop over the same features."""
    rng = np.random.default_rng(0)
    data = RetrievalData(rng.integers(0, 255, (9, 32, 32, 3), dtype=np.uint8),
                         [f"picture {i} of {j}" for i in range(9) for j in "ab"], np.repeat(np.arange(9), 2))
    k = 3
    ours = evaluate(tiny.model, tiny, data, k_test=k, itc_weight=1.0, past_topk="tied")
    model = tiny.model.eval()
    with torch.no_grad():
        embeds, img_feat, ids, mask, txt_feat = embed_split(model, tiny, data)
        sims = (img_feat @ txt_feat.T).numpy()
        pairs = torch.cartesian_prod(torch.arange(9), torch.arange(18))
        itm = itm_logits(model, fused_cls(model, embeds[pairs[:, 0]], ids[pairs[:, 1]], mask[pairs[:, 1]],
                                          tiny.enc_token_id))[:, 1].view(9, 18).numpy()
    blip = blip_itm_eval(*blip_score_matrices(sims, itm, k), data.txt2img)
    for key in ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10"):
        assert ours[f"itm_{key}"] == pytest.approx(blip[key]), key
    itc = evaluate(tiny.model, tiny, data, k_test=k, itc_weight=1.0, past_topk="itc")
    assert itc["itm_txt_r1"] == ours["itm_txt_r1"] and itc["itm_img_r1"] == ours["itm_img_r1"]


def test_unknown_past_topk_is_refused_before_any_work(tiny):
    with pytest.raises(ValueError, match=r"past_topk must be one of \['itc', 'tied'\], got 'blip'"):
        evaluate(None, tiny, None, past_topk="blip")
    with pytest.raises(ValueError, match="past_topk must be one of"):
        BENCHMARKS.get("test-tiny")(past_topk="index")
    assert BENCHMARKS.get("test-tiny")(past_topk="tied").task_config()["past_topk"] == "tied"


def test_every_bundled_suite_below_recall_10_ranks_past_k_as_blip():
    """Where a suite re-ranks fewer than 10 candidates, its R@10 is BLIP's only with the tied ordering."""
    checked = 0
    for group in groups():
        for spec in load(group).trials():
            bench = BENCHMARKS.get(spec.benchmark)(**spec.benchmark_options)
            if isinstance(bench, RetrievalBenchmark):
                checked += 1
                assert bench.k_test >= max(RECALL_KS) or bench.past_topk == "tied", (group, spec.benchmark)
    assert checked
