"""Video on BLIP: clips through the same ViT, pooled ITC features, ITM over every frame's tokens."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suites.tasks.metrics import retrieval_recall
from suites.tasks.retrieval import LossSettings, VideoRetrievalData, encode_images, evaluate, retrieval_losses


def _clips(n=3, t=4, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, t, size, size, 3), dtype=np.uint8)


def test_pixels_of_clips(tiny):
    clips = _clips()
    x = tiny.pixels(clips)
    assert x.shape == (3, 4, 3, 32, 32)
    assert torch.equal(x[1, 2], tiny.pixels(clips[1, 2:3])[0])  # each frame as the image path makes it
    # real videos: a list of clips of different frame sizes, each resized to the model's square input
    odd = [np.zeros((4, 24, 40, 3), np.uint8), np.zeros((4, 48, 64, 3), np.uint8)]
    assert tiny.pixels(odd).shape == (2, 4, 3, 32, 32)


def test_clip_features_pool_frames_and_keep_all_tokens(tiny):
    model = tiny.model.eval()
    x = tiny.pixels(_clips())  # (3, 4, 3, S, S)
    with torch.no_grad():
        tokens, feat = encode_images(model, x)
        frame_tokens, frame_feat = encode_images(model, x.flatten(0, 1))  # images: (12, N, d), (12, e)
    n = frame_tokens.shape[1]
    assert tokens.shape == (3, 4 * n, frame_tokens.shape[-1])
    assert torch.allclose(tokens[1, 2 * n : 3 * n], frame_tokens[1 * 4 + 2])  # frame 2 of clip 1
    expected = F.normalize(frame_feat.view(3, 4, -1).mean(1), dim=-1)
    assert torch.allclose(feat, expected, atol=1e-6) and torch.allclose(feat.norm(dim=-1), torch.ones(3))
    with torch.no_grad():  # no temporal embedding: reversing the frames leaves the ITC feature unchanged
        assert torch.allclose(encode_images(model, x.flip(1))[1], feat, atol=1e-6)


def test_images_unchanged(tiny):
    model = tiny.model.eval()
    x = tiny.pixels(_clips()[:, 0])
    with torch.no_grad():
        tokens, feat = encode_images(model, x)
        ref = model.vision_model(pixel_values=x).last_hidden_state
    assert torch.equal(tokens, ref) and torch.allclose(feat, F.normalize(model.vision_proj(ref[:, 0]), dim=-1))


def test_training_step_on_clips(tiny):
    x = tiny.pixels(_clips(4))
    tok = tiny.tokenize(["a dog runs", "a cat sits", "two birds fly away", "a car turns left"])
    tiny.model.train()
    losses = retrieval_losses(tiny.model, x, tok["input_ids"], tok["attention_mask"], torch.eye(4, dtype=bool),
                              torch.tensor(0.07), tiny.enc_token_id, LossSettings(), torch.Generator().manual_seed(0))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert tiny.model.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["uniform", "random"])
def test_stored_clips_sample_frames(mode):
    clips = np.arange(2 * 16).reshape(2, 16, 1, 1, 1).repeat(3, -1).astype(np.uint8)  # frame value = index
    data = VideoRetrievalData(clips, ["a", "b"], np.arange(2), n_frames=4, frame_mode=mode)
    batch = data.image_batch(np.array([1, 0]))
    assert batch.shape == (2, 4, 1, 1, 3)
    segments = (batch[:, :, 0, 0, 0] % 16) // 4
    assert (segments == np.arange(4)).all()  # one frame per quarter of the clip, in order
    if mode == "uniform":
        assert np.array_equal(batch, data.image_batch(np.array([1, 0])))


def test_video_evaluation_reports_median_rank(tiny):
    data = VideoRetrievalData(_clips(5), [f"clip number {i}" for i in range(5)], np.arange(5), n_frames=2)
    out = evaluate(tiny.model, tiny, data, k_test=3)
    for key in ("itc_txt_r1", "itc_img_r10", "itc_txt_r_mdr", "itm_img_r_mdr", "itm_r_mean"):
        assert key in out
    assert 1 <= out["itc_img_r_mdr"] <= 5


def test_median_rank_by_hand():
    # caption t's true video sits at 0-based rank t among 5: median 1-based rank = 3
    n = 5
    sims = np.zeros((n, n))
    for t in range(n):
        order = [i for i in range(n) if i != t]
        order.insert(t, t)
        for rank, vid in enumerate(order):
            sims[vid, t] = n - rank
    out = retrieval_recall(sims, np.arange(n), median_rank=True)
    assert out["img_r_mdr"] == 3.0
    assert "txt_r_mdr" not in retrieval_recall(sims, np.arange(n))  # image retrieval keys unchanged


def _numbered_clips(n=12):
    return VideoRetrievalData(_clips(n), [f"clip number {i}" for i in range(n)], np.arange(n), n_frames=2)


def test_itm_ranks_past_the_top_k_follow_itc(tiny):
    """With k_test = 1 ITM re-ranks a single candidate per query, so every rank, the median included, is ITC's
    (ranks past k used to count as misses: R@5 fell to R@1 and the median rank to the worst)."""
    data = _numbered_clips()
    out = evaluate(tiny.model, tiny, data, k_test=1)
    for key in ("txt_r5", "img_r10", "txt_r_mdr", "img_r_mdr", "r_mean"):
        assert out[f"itm_{key}"] == pytest.approx(out[f"itc_{key}"]), key


def test_rerank_weighs_itc_as_a_logit_by_default(tiny):
    """The default re-ranking score is ITM logit + ITC cosine / temperature; a huge ITC weight leaves ITC's order."""
    data = _numbered_clips()
    default = evaluate(tiny.model, tiny, data, k_test=4)
    as_logit = evaluate(tiny.model, tiny, data, k_test=4, itc_weight=1 / tiny.temp)
    itc_only = evaluate(tiny.model, tiny, data, k_test=4, itc_weight=1e9)
    for key in ("txt_r1", "img_r1", "r_mean", "img_r_mdr"):
        assert default[f"itm_{key}"] == pytest.approx(as_logit[f"itm_{key}"]), key
        assert itc_only[f"itm_{key}"] == pytest.approx(itc_only[f"itc_{key}"]), key
