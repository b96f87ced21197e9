"""ITM re-ranking computes only the text columns its captions use: pairs in order of caption length, each
chunk cut to its longest caption. The scores are those of each pair scored alone, unpadded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from suites.backbones import build_backbone
from suites.tasks import retrieval

CAPTIONS = ["a", "red circle left", "two blue squares at the top right", "a green ring", "big small tiny dot there now",
            "x y", "one two three four five six seven eight", "z"]


@pytest.fixture
def scored(monkeypatch):
    """(backbone, image tokens, ids, mask, pairs) of 4 images x 8 captions of 1 to 8 words, all 32 pairs."""
    backbone = build_backbone("test-tiny")
    model = backbone.model.eval()
    images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        embeds, _ = retrieval.encode_images(model, backbone.pixels(images))
    tok = backbone.tokenize(CAPTIONS)
    img_idx, txt_idx = (t.flatten() for t in torch.meshgrid(torch.arange(4), torch.arange(8), indexing="ij"))
    monkeypatch.setattr(retrieval, "ITM_TOKENS_PER_CHUNK", 5 * embeds.shape[1])  # 5 pairs per chunk
    return backbone, embeds, tok["input_ids"], tok["attention_mask"], img_idx, txt_idx


def alone(backbone, embeds, ids, mask, i, t) -> float:
    """The ITM logit of one pair, its caption without padding."""
    n = int(mask[t].sum())
    with torch.no_grad():
        fused = retrieval.fused_cls(backbone.model, embeds[i : i + 1], ids[t : t + 1, :n], mask[t : t + 1, :n],
                                    backbone.enc_token_id)
        return float(retrieval.itm_logits(backbone.model, fused)[0, 1])


def test_length_ordered_chunks_give_each_pair_its_own_score(scored):
    backbone, embeds, ids, mask, img_idx, txt_idx = scored
    scores = retrieval._itm_scores(backbone.model, embeds, ids, mask, img_idx, txt_idx, backbone.enc_token_id)
    expected = [alone(backbone, embeds, ids, mask, int(i), int(t)) for i, t in zip(img_idx, txt_idx)]
    torch.testing.assert_close(scores, torch.tensor(expected), rtol=0, atol=1e-5)


def test_each_chunk_computes_only_the_columns_its_captions_use(scored, monkeypatch):
    backbone, embeds, ids, mask, img_idx, txt_idx = scored
    widths, full = [], retrieval.fused_cls

    def recording(model, visual, chunk_ids, chunk_mask, enc):
        widths.append((len(chunk_ids), chunk_ids.shape[1], int(chunk_mask.sum(1).max())))
        return full(model, visual, chunk_ids, chunk_mask, enc)

    monkeypatch.setattr(retrieval, "fused_cls", recording)
    retrieval._itm_scores(backbone.model, embeds, ids, mask, img_idx, txt_idx, backbone.enc_token_id)
    assert all(width == longest for _, width, longest in widths)  # no column past a chunk's longest caption
    assert sum(n * width for n, width, _ in widths) < 0.7 * len(img_idx) * ids.shape[1]


def test_left_padded_captions_keep_every_used_column(scored, monkeypatch):
    backbone, embeds, ids, mask, img_idx, txt_idx = scored
    # the same captions padded on the left: a chunk keeps through its last used column, whatever its lengths
    n = mask.sum(1)
    left_ids, left_mask = torch.zeros_like(ids), torch.zeros_like(mask)
    for r in range(len(ids)):
        left_ids[r, ids.shape[1] - n[r]:], left_mask[r, ids.shape[1] - n[r]:] = ids[r, : n[r]], 1
    widths, full = [], retrieval.fused_cls
    monkeypatch.setattr(retrieval, "fused_cls", lambda m, v, i, k, e: widths.append(i.shape[1]) or full(m, v, i, k, e))
    retrieval._itm_scores(backbone.model, embeds, left_ids, left_mask, img_idx, txt_idx, backbone.enc_token_id)
    assert set(widths) == {ids.shape[1]}
