"""Greedy answer generation with the decoder's KV cache: the same tokens as re-reading the prefix for a plain
model, and, under Aurora, each ``decode_delta`` value equal to a reference written from its definition."""

import pytest
import torch

import aurora
from suites.backbones import build_backbone
from suites.tasks.passes import visual_tokens
from suites.tasks.vqa import encode_questions, generate_answers, special_ids

# different lengths, so the question states of the batch carry padding
QUESTIONS = ["what colour is the small car", "how many", "is it raining on the red house today", "who"]


def _tiny_vqa(sep_boost: float = 0.0):
    """A tiny random BLIP whose answers depend on the question: its matrices re-drawn at std 0.1 (at the init's
    0.02 every question gets the same answer); ``sep_boost`` raises [SEP]'s LM bias so answers stop early."""
    backbone = build_backbone("test-tiny", task="vqa")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in backbone.model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        backbone.model.text_decoder.cls.predictions.bias[special_ids(backbone)[1]] += sep_boost
    return backbone


def _states(backbone, seed=0):
    model = backbone.model.eval()
    pixels = torch.randn(len(QUESTIONS), 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        states, mask = encode_questions(model, backbone, visual_tokens(model, pixels), QUESTIONS)
    assert (mask == 0).any()  # a padded batch
    return states, mask


def _generate(backbone, states, mask, use_cache, max_len=8):
    """-> (answers, (B, steps, V) logits each step picked its token from), the logits caught at the decoder."""
    caught = []
    hook = backbone.model.text_decoder.register_forward_hook(lambda m, a, out: caught.append(out.logits[:, -1]))
    try:
        answers = generate_answers(backbone.model, states, mask, *special_ids(backbone), max_len, use_cache=use_cache)
    finally:
        hook.remove()
    return answers, torch.stack(caught, 1)


@pytest.mark.parametrize("sep_boost", [0.0, 1.0])
def test_cached_generation_matches_rereading_the_prefix(sep_boost):
    """Without a method the KV cache changes nothing: the same tokens, the same logits at every step, with and
    without answers that stop at [SEP] while others go on."""
    backbone = _tiny_vqa(sep_boost)
    states, mask = _states(backbone)
    cached, cached_logits = _generate(backbone, states, mask, use_cache=True)
    full, full_logits = _generate(backbone, states, mask, use_cache=False)
    assert cached == full
    assert len({tuple(a) for a in cached}) > 1 and max(map(len, cached)) >= 5  # answers differ, several tokens
    if sep_boost:
        assert min(map(len, cached)) < max(map(len, cached))  # some answers finish first
    torch.testing.assert_close(cached_logits, full_logits, atol=1e-5, rtol=0)
    for q in range(len(QUESTIONS)):  # padding does not leak: each question alone decodes the same answer
        n = int(mask[q].sum())
        alone = generate_answers(backbone.model, states[q : q + 1, :n], mask[q : q + 1, :n], *special_ids(backbone), 8)
        assert alone == [cached[q]]


def _aurora(decode_delta):
    """The same Aurora-adapted tiny VQA model for either mode, with every delta non-zero (V random)."""
    backbone = _tiny_vqa()
    torch.manual_seed(0)
    aurora.create_method("aurora", rank=4, dropout=0.0, decode_delta=decode_delta).apply(backbone.model)
    with torch.no_grad():
        torch.nn.init.normal_(backbone.model.aurora_shared.V.weight, std=2.0)
    return backbone


def _teacher_forced(backbone, states, mask, answers, dec_id):
    """(B, n, V) logits of one uncached pass over [DEC] + the answers' tokens but the last (equal lengths)."""
    ids = torch.tensor([[dec_id, *a[:-1]] for a in answers])
    with torch.no_grad():
        return backbone.model.text_decoder(input_ids=ids, encoder_hidden_states=states,
                                           encoder_attention_mask=mask).logits


def _delta_on_first_position_only(backbone):
    """The official code's cached decoding written out for one uncached pass: the decoder's self-attention k and
    v carry the delta at position 0 ([DEC], decoded without a cache) and not after; every other layer keeps it."""
    for layer in backbone.model.text_decoder.bert.encoder.layer:
        for linear in (layer.attention.self.key, layer.attention.self.value):
            def forward(x, linear=linear, adapted=linear.forward):
                first = torch.zeros(x.shape[1], 1)
                first[0] = 1.0  # (L, 1)
                return linear.base(x) + (adapted(x) - linear.base(x)) * first
            linear.forward = forward


def test_decode_delta_modes_differ_and_each_matches_its_definition():
    consistent, official = _aurora("consistent"), _aurora("official")
    states, mask = _states(consistent)
    dec_id = special_ids(consistent)[0]
    with torch.no_grad():  # one model in two modes: the same weights and question states
        for a, b in zip(consistent.model.parameters(), official.model.parameters()):
            assert torch.equal(a, b)
        torch.testing.assert_close(_states(official)[0], states)

    answers_c, logits_c = _generate(consistent, states, mask, use_cache=True, max_len=6)
    answers_o, logits_o = _generate(official, states, mask, use_cache=True, max_len=6)
    assert all(len(a) == 5 for a in answers_c + answers_o)  # no [SEP] before max_len: equal lengths
    # step 1 reads [DEC] alone, without a cache, in both modes; later steps read cached tokens
    torch.testing.assert_close(logits_o[:, 0], logits_c[:, 0], atol=1e-5, rtol=0)
    assert (logits_o[:, 1:] - logits_c[:, 1:]).abs().amax() > 1e-2
    assert answers_o != answers_c

    # consistent: the delta on every token, as one uncached pass over the answer computes it
    torch.testing.assert_close(logits_c, _teacher_forced(consistent, states, mask, answers_c, dec_id), atol=1e-5,
                               rtol=0)
    assert _generate(consistent, states, mask, use_cache=False, max_len=6)[0] == answers_c
    # official: no delta on the self-attention k, v of tokens decoded after [DEC]
    _delta_on_first_position_only(official)
    reference = _teacher_forced(official, states, mask, answers_o, dec_id)
    torch.testing.assert_close(logits_o, reference, atol=1e-5, rtol=0)
    assert reference.argmax(-1).tolist() == answers_o


@pytest.mark.parametrize("mode", ["consistent", "official"])
def test_uncached_generation_applies_the_delta_everywhere_in_both_modes(mode):
    """Without a cache the mode has nothing to act on: both modes decode as in training."""
    backbone = _aurora(mode)
    states, mask = _states(backbone)
    dec_id = special_ids(backbone)[0]
    answers, logits = _generate(backbone, states, mask, use_cache=False, max_len=6)
    torch.testing.assert_close(logits, _teacher_forced(backbone, states, mask, answers, dec_id), atol=1e-5, rtol=0)
