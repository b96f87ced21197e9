"""BLIP's attention through the fused kernel (``suites.backbones.attention``) computes what transformers' eager
layers compute: every pass the tasks run, forward and backward, masks included, and generation."""

import copy

import pytest
import torch

from aurora import arch
from suites.backbones import build_backbone
from suites.backbones.attention import FUSED, use_sdpa
from suites.tasks.passes import image_grounded, visual_tokens
from suites.tasks.vqa import answer_log_likelihood, encode_questions, generate_answers, special_ids, tokenize_answers

QUESTIONS = ["what colour is it", "what colour is the big square in the left corner of the picture"]
CAPTIONS = ["a red square", "a small blue circle beside a big green triangle on the left"]


def _eager_twin(model):
    return use_sdpa(copy.deepcopy(model), fused=False)


def _attention_classes(model) -> set[type]:
    return {type(m) for m in model.modules() if type(m) in FUSED or type(m) in FUSED.values()}


@pytest.mark.parametrize("task", ["retrieval", "vqa"])
def test_every_built_blip_uses_the_fused_layers(task):
    model = build_backbone("test-tiny", task=task).model
    assert _attention_classes(model) == set(FUSED.values())
    assert _attention_classes(_eager_twin(model)) == set(FUSED)


def _retrieval_passes(model, backbone, pixels, tok):
    visual = visual_tokens(model, pixels)  # (B, N, d)
    text = arch.text_encoder(model)(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
    fused = image_grounded(model, visual, tok["input_ids"], tok["attention_mask"], backbone.enc_token_id)
    return visual, text.last_hidden_state, fused


def _masked_rows(states, mask):
    return states * mask[..., None]  # padded positions' states are not read by anything downstream


def test_retrieval_passes_and_gradients_match_eager():
    backbone = build_backbone("test-tiny")
    fused_model = backbone.model.train()
    eager_model = _eager_twin(fused_model)
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, backbone.image_size, backbone.image_size)
    tok = backbone.tokenize(CAPTIONS)
    assert (tok["attention_mask"] == 0).any()  # the short caption is padded: the mask matters
    outputs, grads = [], []
    for model in (eager_model, fused_model):
        model.zero_grad()
        visual, text, grounded = _retrieval_passes(model, backbone, pixels, tok)
        loss = visual.square().mean() + text[:, 0].square().mean() + grounded[:, 0].square().mean()
        loss.backward()
        outputs.append((visual, _masked_rows(text, tok["attention_mask"]), _masked_rows(grounded, tok["attention_mask"])))
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    for eager, fused in zip(*outputs):
        torch.testing.assert_close(fused, eager, atol=1e-5, rtol=1e-4)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)


def _vqa_outputs(model, backbone):
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, backbone.image_size, backbone.image_size)
    with torch.no_grad():
        states, mask = encode_questions(model, backbone, visual_tokens(model, pixels), QUESTIONS)
        ids, answer_mask = tokenize_answers(backbone, ["red", "a small green circle"])
        log_lik = answer_log_likelihood(model, states, mask, ids, answer_mask)  # causal + padded masks
        # decoding with the KV cache (the eager path) and without (the fused one, causal mask)
        answers = [generate_answers(model, states, mask, *special_ids(backbone), max_len=6, use_cache=cached)
                   for cached in (True, False)]
    return log_lik, answers


def test_vqa_decoder_and_generation_match_eager():
    backbone = build_backbone("test-tiny", task="vqa")
    eager_ll, eager_answers = _vqa_outputs(_eager_twin(backbone.model), backbone)
    fused_ll, fused_answers = _vqa_outputs(backbone.model, backbone)
    torch.testing.assert_close(fused_ll, eager_ll, atol=1e-5, rtol=1e-4)
    assert fused_answers == eager_answers


def test_bf16_autocast_matches_eager_within_bf16_rounding():
    backbone = build_backbone("test-tiny")
    tok = backbone.tokenize(CAPTIONS)
    pixels = torch.randn(2, 3, backbone.image_size, backbone.image_size)
    results = []
    for model in (_eager_twin(backbone.model), backbone.model):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            _, text, grounded = _retrieval_passes(model, backbone, pixels, tok)
        results.append(torch.cat([text[:, 0], grounded[:, 0]]).float())
    assert torch.isfinite(results[1]).all()
    torch.testing.assert_close(results[1], results[0], atol=0.05, rtol=0.05)
