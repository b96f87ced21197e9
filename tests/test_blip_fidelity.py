"""Where transformers' BLIP differs from BLIP, and what the suite does about it.

1. The text cross-attention of transformers' BLIP (5.x) ignores ``encoder_attention_mask``: VQA's answer decoder
   read padded question states. ``suites.backbones.blip.fix_cross_attention_mask`` makes the mask reach it,
   on every BLIP the suite builds, while the installed transformers needs it.
2. ``BlipConfig()`` is not BLIP-base; ``blip_base_config`` is.
"""

import pytest
import torch

from aurora import arch
from aurora.registry import UnknownNameError
from suites.backbones import build_backbone
from suites.backbones.blip import (
    blip_base_config,
    blip_config,
    cross_attention_ignores_mask,
    fix_cross_attention_mask,
    model_class,
)
from suites.tasks.passes import visual_tokens
from suites.tasks.vqa import answer_log_likelihood, encode_questions, rank_answers, tokenize_answers

QUESTION = "what colour is it"
LONG = "what colour is the big square in the left corner of the picture"  # pads QUESTION's row by 9 tokens
ANSWERS = ["red", "blue square", "a small green circle"]


def _answer_scores(model, backbone, batch: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """QUESTION (the first of ``batch``) about one image: the decoder's logits for each answer (A, La, V) and
    each answer's log-likelihood (A,), with QUESTION's states and mask padded as wide as ``batch`` needs."""
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, backbone.image_size, backbone.image_size).expand(len(batch), -1, -1, -1)
    with torch.no_grad():
        states, mask = encode_questions(model, backbone, visual_tokens(model, pixels), batch)
        rows = torch.zeros(len(ANSWERS), dtype=torch.long)  # QUESTION's row once per answer
        ids, answer_mask = tokenize_answers(backbone, ANSWERS)
        decoder = arch.text_decoder(model)
        logits = decoder(input_ids=ids, attention_mask=answer_mask, encoder_hidden_states=states[rows],
                         encoder_attention_mask=mask[rows]).logits
        log_lik = answer_log_likelihood(model, states[rows], mask[rows], ids, answer_mask)
    return logits, log_lik


def _padding_shift(model, backbone) -> tuple[float, float]:
    """How far QUESTION's answer logits and log-likelihoods move when its batch pads it."""
    alone_logits, alone_ll = _answer_scores(model, backbone, [QUESTION, QUESTION])
    padded_logits, padded_ll = _answer_scores(model, backbone, [QUESTION, LONG])
    return float((alone_logits - padded_logits).abs().max()), float((alone_ll - padded_ll).abs().max())


@pytest.fixture
def tiny_vqa():
    return build_backbone("test-tiny", task="vqa")


def test_answer_logits_ignore_question_padding(tiny_vqa):
    tok = tiny_vqa.tokenize([QUESTION, LONG])["attention_mask"]
    assert (tok[0] == 0).sum() >= 5  # the batch really pads QUESTION
    logit_shift, log_lik_shift = _padding_shift(tiny_vqa.model, tiny_vqa)
    assert logit_shift < 1e-5
    assert log_lik_shift < 1e-5


def test_ranking_ignores_question_padding(tiny_vqa):
    model, backbone = tiny_vqa.model, tiny_vqa
    cand_ids, cand_mask = tokenize_answers(backbone, ANSWERS)
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, backbone.image_size, backbone.image_size)
    pixels[1] = pixels[0]
    with torch.no_grad():
        visual = visual_tokens(model, pixels)
        alone, alone_mask = encode_questions(model, backbone, visual[:1], [QUESTION])
        padded, padded_mask = encode_questions(model, backbone, visual, [QUESTION, LONG])
        first_alone = arch.text_decoder(model)(input_ids=cand_ids[:1, :1], encoder_hidden_states=alone,
                                                      encoder_attention_mask=alone_mask).logits
        first_padded = arch.text_decoder(model)(input_ids=cand_ids[:1, :1], encoder_hidden_states=padded[:1],
                                                       encoder_attention_mask=padded_mask[:1]).logits
        assert float((first_alone - first_padded).abs().max()) < 1e-5
        best_alone = rank_answers(model, alone, alone_mask, cand_ids, cand_mask, k=2)
        best_padded = rank_answers(model, padded, padded_mask, cand_ids, cand_mask, k=2)
    assert best_alone[0] == best_padded[0]


def test_detection_agrees_with_the_unpatched_model(tiny_vqa):
    """The behaviour check says the installed transformers needs the fix exactly when an unpatched model (built
    without ``from_config``) moves its answer logits with the padding; where it does, the patch is what keeps
    the suite's models still."""
    torch.manual_seed(0)
    unpatched = model_class("vqa")(blip_config(hidden=32, layers=2, heads=2, mlp=64, image_size=32, patch=16,
                                               vocab_size=64, proj=16)).eval()
    shift, _ = _padding_shift(unpatched, tiny_vqa)
    assert cross_attention_ignores_mask() == (shift > 1e-4), f"unpatched logits move by {shift:.3g}"
    assert cross_attention_ignores_mask() is cross_attention_ignores_mask()  # once per process, same answer
    fixed, _ = _padding_shift(fix_cross_attention_mask(unpatched), tiny_vqa)
    assert fixed < 1e-5


def _hooked(core) -> bool:
    return bool(getattr(core, "_passes_encoder_mask", False))


def test_fix_touches_only_cross_attention_and_only_once(tiny_vqa):
    model = tiny_vqa.model
    blip = arch.architecture_of(model)
    layers = blip.text_layers(model)
    crosses = [blip.attention_core(blip.cross_attention(layer)) for layer in layers]
    assert len(crosses) == 4  # question encoder and answer decoder, 2 layers each
    assert all(_hooked(c) == cross_attention_ignores_mask() for c in crosses)
    assert not any(_hooked(blip.attention_core(blip.self_attention(layer))) for layer in layers)
    hooks = [len(c._forward_pre_hooks) for c in crosses]
    fix_cross_attention_mask(model)
    assert [len(c._forward_pre_hooks) for c in crosses] == hooks


# ---------------------------------------------------------------- the BLIP-base config

# Expected values of BLIP-base, each with where it comes from:
#  [med] BLIP's configs/med_config.json (salesforce/BLIP): BERT-base text encoder with cross-attention.
#  [vit] BLIP's models/vit.py and blip.py create_vit("base"): ViT-B/16, norm_layer LayerNorm(eps=1e-6).
#  [tok] BLIP's models/blip.py init_tokenizer: bert-base-uncased + bos "[DEC]" + "[ENC]" -> ids 30522, 30523;
#        bert-base-uncased: [PAD] 0, [SEP] 102.
#  [hub] the released transformers configs Salesforce/blip-itm-base-coco and blip-vqa-base: text
#        num_attention_heads fixed from 8 to 12 on the hub (transformers issue 22625, PR 22632); both at 384 px
#        (transformers' convert_blip_original_pytorch_to_hf.py converts the ITM and the VQA model with
#        image_size=384; BLIP fine-tuned VQA at 480 px, configs/vqa.yaml, the conversion resized the position
#        embeddings); embed dim 256 ([med]'s blip_retrieval embed_dim) and projection_dim 512.
TEXT = {
    "vocab_size": 30524,  # [med]
    "hidden_size": 768,  # [med]
    "intermediate_size": 3072,  # [med]
    "num_hidden_layers": 12,  # [med]
    "num_attention_heads": 12,  # [med], [hub]; BlipTextConfig() has 8
    "layer_norm_eps": 1e-12,  # [med]
    "max_position_embeddings": 512,  # [med]
    "encoder_hidden_size": 768,  # [med] encoder_width
    "is_decoder": True,  # [med] add_cross_attention: every layer has cross-attention
    "bos_token_id": 30522,  # [tok] [DEC]
    "pad_token_id": 0,  # [tok]
    "sep_token_id": 102,  # [tok]
}
VISION = {
    "hidden_size": 768,  # [vit]
    "intermediate_size": 3072,  # [vit] mlp_ratio 4
    "num_hidden_layers": 12,  # [vit]
    "num_attention_heads": 12,  # [vit]
    "patch_size": 16,  # [vit]
    "image_size": 384,  # [hub] (retrieval and VQA)
    "layer_norm_eps": 1e-6,  # [vit]; BlipVisionConfig() and, as far as we can tell, the hub configs have 1e-5
}
ENC_TOKEN_ID = 30523  # [tok]


@pytest.mark.parametrize("task", ["retrieval", "vqa"])
def test_blip_base_config_is_blip_base(task):
    config = blip_base_config(task)
    for name, value in TEXT.items():
        assert getattr(config.text_config, name) == value, name
    for name, value in VISION.items():
        assert getattr(config.vision_config, name) == value, name
    assert config.image_text_hidden_size == 256  # [hub], BLIP's embed_dim
    assert config.projection_dim == 512  # [hub]


def test_blip_base_config_refuses_an_unknown_task():
    with pytest.raises(UnknownNameError):
        blip_base_config("captioning")


@pytest.mark.parametrize(("task", "total"), [("retrieval", 223_744_258), ("vqa", 361_230_140)])
def test_blip_base_backbone_is_built_from_it(task, total):
    """The registered backbone (on the meta device: no weights allocated) has BLIP-base's heads and eps, and the
    parameter count heads and eps cannot change."""
    with torch.device("meta"):
        backbone = build_backbone("blip-base", task=task)
    model = backbone.model
    blip = arch.architecture_of(model)
    text_layer = blip.text_layers(model)[0]
    assert blip.attention_core(blip.self_attention(text_layer)).num_attention_heads == 12
    assert blip.vit_layers(model)[0].layer_norm1.eps == 1e-6
    assert backbone.enc_token_id == ENC_TOKEN_ID and backbone.image_size == VISION["image_size"]
    assert sum(p.numel() for p in model.parameters()) == total


def test_cli_counts_on_blip_base_config():
    from suites.cli import _blip_base_trainable

    assert _blip_base_trainable("aurora").startswith("125,696 ")
