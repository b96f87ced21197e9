"""Every registered method on the tiny VQA model, plus hand counts of trainable parameters.

The tiny config (suites.backbones.tiny): hidden d = 32, 2 layers per tower, MLP 64, 2 heads; 32 px images in
16 px patches give 4 patch tokens + [CLS]. Retrieval has one BERT (the text encoder), VQA two (encoder and
answer decoder); every BERT layer has cross-attention.
"""

import pytest
import torch

import aurora
from aurora.registry import METHODS
from suites.backbones import build_backbone

ALL = aurora.list_methods()
D, LAYERS, MLP = 32, 2, 64
# Every method with its defaults, plus the variants whose code paths the defaults do not reach.
VARIANTS = [(m, {}) for m in ALL] + [
    ("adapter", {"placement": "parallel"}),
    ("prompt_tuning", {"depth": "deep"}),
    ("prompt_tuning", {"vision": False}),
]


def variants(keep):
    """The variants whose method class satisfies ``keep``, as pytest params with readable ids."""
    return [pytest.param(name, options, id="-".join([name, *(f"{k}={v}" for k, v in options.items())]))
            for name, options in VARIANTS if keep(METHODS.get(name))]


def vqa_batch():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 64, (2, 6), generator=gen)
    ids[:, 0] = 1  # [CLS]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(2, 3, 32, 32, generator=gen),
            "labels": torch.randint(4, 64, (2, 4), generator=gen)}


def vqa_model(name=None, seed=0, **options):
    model = build_backbone("test-tiny", task="vqa").model
    torch.manual_seed(seed)
    method = aurora.create_method(name, **options) if name else None
    if method is not None:
        method.apply(model)
    return method, model.eval()


def vqa_outputs(model, batch):
    """What a VQA benchmark reads: the question encoding and the answer decoder's logits."""
    with torch.no_grad():
        image = model.vision_model(pixel_values=batch["pixel_values"]).last_hidden_state
        question = model.text_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                      encoder_hidden_states=image).last_hidden_state
        logits = model.text_decoder(input_ids=batch["labels"], encoder_hidden_states=question,
                                    encoder_attention_mask=batch["attention_mask"]).logits
    return image, question, logits


@pytest.mark.parametrize("name, options", variants(lambda cls: cls.trains))
def test_vqa_training_step_moves_only_trainable_parameters(name, options):
    method, model = vqa_model(name, **options)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:  # VQA declares no heads, so a heads-only method has nothing to train here
        assert aurora.param_report(model).method_trainable == 0
        pytest.skip(f"{name} trains only the benchmark's heads; VQA has none")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.0)
    model.train()
    for step in range(2):  # two steps: zero-initialised factors (LoRA's B) pass the gradient on in step 2
        loss = model(**vqa_batch()).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.on_step_end(model, step, 2)
    for n, p in model.named_parameters():
        moved = not torch.equal(before[n], p.detach())
        assert moved == p.requires_grad, f"{name}: {n} requires_grad={p.requires_grad} but moved={moved}"


@pytest.mark.parametrize("name, options", variants(lambda cls: cls.identity_at_init))
def test_vqa_identity_at_init(name, options):
    batch = vqa_batch()
    reference = vqa_outputs(vqa_model()[1], batch)
    for ref, out in zip(reference, vqa_outputs(vqa_model(name, **options)[1], batch)):
        # 1e-3: Aurora's GQT starts at ~2e-4 (not exactly zero), and VQA stacks two BERTs
        torch.testing.assert_close(out, ref, atol=1e-3, rtol=0)


def method_trainable(name, task="retrieval", **options):
    model = build_backbone("test-tiny", task=task).model
    aurora.create_method(name, **options).apply(model)
    return aurora.param_report(model).method_trainable


def test_lora_hand_count_vqa():
    # per layer: vision qkv 32 -> 96; 6 text q/k/v 32 -> 32 in the encoder and 6 more in the decoder
    per_layer = 8 * (D + 3 * D) + 2 * 6 * 8 * (D + D)
    assert method_trainable("lora", "vqa", r=8) == LAYERS * per_layer


def test_bitfit_trains_every_tower_bias_and_nothing_else():
    model = build_backbone("test-tiny", task="vqa").model
    aurora.create_method("bitfit").apply(model)
    for n, p in model.named_parameters():
        in_tower = n.startswith(("vision_model.", "text_encoder.", "text_decoder.bert."))
        assert p.requires_grad == (in_tower and n.endswith("bias")), n


def test_adalora_budget_shrinks_to_target_rank():
    method, model = vqa_model("adalora", init_r=4, target_r=2)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    steps = 10
    for step in range(steps):
        loss = model(**vqa_batch()).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.on_step_end(model, step, steps)
    ranks = [int((p != 0).sum()) for n, p in model.named_parameters() if "lora_E" in n]
    assert sum(ranks) == 2 * len(ranks)  # the budget: target_r per adapted weight, on average


@pytest.mark.parametrize("placement", ["sequential", "parallel"])
@pytest.mark.parametrize("task, berts", [("retrieval", 1), ("vqa", 2)])
def test_adapter_hand_count(placement, task, berts):
    w = 8
    per_adapter = D * w + w + w * D + D  # down (weight, bias) + up (weight, bias)
    per_layer = 2 + 3 * berts  # ViT: attention, MLP; each BERT: self-attention, cross-attention, FFN
    assert method_trainable("adapter", task, width=w, placement=placement) == LAYERS * per_layer * per_adapter


@pytest.mark.parametrize("task", ["retrieval", "vqa"])
def test_vpt_deep_hand_count(task):
    p = 4
    # one (P, d) set per layer in the ViT and in the text encoder (the VQA answer decoder gets none)
    assert method_trainable("prompt_tuning", task, tokens=p, depth="deep") == 2 * LAYERS * p * D
    assert method_trainable("prompt_tuning", task, tokens=p, depth="shallow") == 2 * p * D


def test_prompts_keep_the_towers_output_shapes_and_padding_mask():
    backbone = build_backbone("test-tiny")
    model = backbone.model
    tok = backbone.tokenize(["a red circle", "two blue squares on the left"])
    pixels = torch.randn(2, 3, 32, 32)
    text_before = model.text_encoder(**tok).last_hidden_state
    image_before = model.vision_model(pixel_values=pixels).last_hidden_state
    aurora.create_method("prompt_tuning", tokens=3, depth="deep").apply(model)
    text = model.text_encoder(**tok).last_hidden_state
    assert text.shape == text_before.shape
    assert model.vision_model(pixel_values=pixels).last_hidden_state.shape == image_before.shape
    ids = tok["input_ids"].clone()
    ids[0, -1] = 7  # a padded position of caption 0: masked, so it must change nothing
    assert not tok["attention_mask"][0, -1]
    moved = model.text_encoder(input_ids=ids, attention_mask=tok["attention_mask"]).last_hidden_state
    torch.testing.assert_close(moved[0, :4], text[0, :4], atol=0, rtol=0)


@pytest.mark.parametrize("task", ["retrieval", "vqa"])
def test_uniadapter_is_shared_across_towers(task):
    w = 8
    # per layer index, whatever the number of BERTs: input LN, down, three up-projections, multimodal LN
    per_index = 2 * D + (D * w + w) + 3 * (w * D + D) + 2 * D
    assert method_trainable("uniadapter", task, width=w) == LAYERS * per_index
