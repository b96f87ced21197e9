"""Every registered method, on a tiny BLIP: the contract of ``Method.apply``."""

import pytest
import torch
from torch import nn

import aurora
from aurora.api import _BACKBONE_TAG, TargetingError, train_heads
from aurora.checkpoint import load_trained, save_trained
from aurora.registry import METHODS
from suites.backbones import build_backbone
from suites.benchmarks import RetrievalBenchmark
from suites.tasks.retrieval import LossSettings, encode_images, encode_texts, fused_cls, retrieval_losses

ALL = aurora.list_methods()
TRAINING = [m for m in ALL if METHODS.get(m).trains]


def outputs(model, batch, enc_id=3):
    """ITC similarities and ITM logits: everything a retrieval benchmark reads from the model."""
    with torch.no_grad():
        embeds, img = encode_images(model, batch["pixels"])
        _, txt = encode_texts(model, batch["input_ids"], batch["attention_mask"])
        itm = model.itm_head(fused_cls(model, embeds, batch["input_ids"], batch["attention_mask"], enc_id))
    return img @ txt.T, itm


def adapted(name, seed=0):
    backbone = build_backbone("test-tiny")
    torch.manual_seed(seed)
    method = aurora.create_method(name)
    model = method.apply(backbone.model)
    if method.trains:
        train_heads(model, RetrievalBenchmark.heads(model))
    return method, model.eval()


def test_registry_has_the_foundation_methods():
    assert {"frozen", "full_finetune", "lora", "aurora"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_backbone_frozen_unless_the_method_trains_it(name):
    method, model = adapted(name)
    heads = RetrievalBenchmark.heads(model) if method.trains else ()
    for pname, p in model.named_parameters():
        in_head = any(pname.startswith(h + ".") for h in heads)
        if getattr(p, _BACKBONE_TAG, False) and not in_head and not method.tunes_backbone:
            assert not p.requires_grad, f"{name} left backbone weight {pname} trainable"


@pytest.mark.parametrize("name", TRAINING)
def test_only_trainable_parameters_change(name, tiny_batch):
    method, model = adapted(name)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable, f"{name} trains nothing"
    opt = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.0)
    model.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        loss = retrieval_losses(model, tiny_batch["pixels"], tiny_batch["input_ids"], tiny_batch["attention_mask"],
                                tiny_batch["truth"], torch.tensor(0.07), 3, LossSettings(), gen,
                                method.task_hooks())["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in model.named_parameters():
        moved = not torch.equal(before[n], p.detach())
        assert moved == p.requires_grad, f"{name}: {n} requires_grad={p.requires_grad} but moved={moved}"


@pytest.mark.parametrize("name", [m for m in ALL if METHODS.get(m).identity_at_init])
def test_identity_at_init(name, tiny_batch):
    reference = outputs(build_backbone("test-tiny").model, tiny_batch)
    _, model = adapted(name)
    for ref, out in zip(reference, outputs(model, tiny_batch)):
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", TRAINING)
def test_save_and_reload_reproduces_outputs(name, tiny_batch, tmp_path):
    method, model = adapted(name, seed=0)
    with torch.no_grad():  # stand-in for training: move every trainable tensor
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    expected = outputs(model, tiny_batch)
    path = save_trained(model, tmp_path / "w.safetensors", method)
    _, fresh = adapted(name, seed=1)  # a different initialisation, overwritten by the load
    load_trained(fresh, path)
    for ref, out in zip(expected, outputs(fresh, tiny_batch)):
        torch.testing.assert_close(out, ref, atol=0, rtol=0)


@pytest.mark.parametrize("name", TRAINING)
def test_targeting_nothing_raises(name):
    with pytest.raises(TargetingError):
        aurora.create_method(name).apply(nn.Module())


def test_unknown_method_lists_valid_names():
    with pytest.raises(aurora.UnknownNameError, match="valid methods: .*lora"):
        aurora.create_method("loraa")


def test_unknown_option_lists_valid_options():
    with pytest.raises(aurora.UnknownNameError, match="valid options"):
        aurora.create_method("lora", rank=3)


def test_param_report_counts_shared_tensors_once():
    _, model = adapted("aurora")
    report = aurora.param_report(model)
    shared = sum(p.numel() for p in model.aurora_shared.parameters())
    per_layer = sum(p.numel() for n, p in model.named_parameters() if "aurora_p" in n or "aurora_gqt" in n)
    assert report.method_trainable == shared + per_layer
    assert report.head_trainable == sum(p.numel() for h in RetrievalBenchmark.heads(model)
                                        for p in model.get_submodule(h).parameters())
    assert report.total == sum(p.numel() for p in build_backbone("test-tiny").model.parameters())


def test_lora_hand_count():
    backbone = build_backbone("test-tiny")  # hidden 32, 2 layers: vision qkv 32->96, text q/k/v 32->32 (x2)
    aurora.create_method("lora", r=8).apply(backbone.model)
    per_layer = 8 * (32 + 96) + 6 * 8 * (32 + 32)
    assert aurora.param_report(backbone.model).method_trainable == 2 * per_layer


@pytest.mark.parametrize("name", ALL)
def test_config_round_trips_through_pickle_and_dict(name):
    import pickle

    method = aurora.create_method(name)
    config = method.config
    assert pickle.loads(pickle.dumps(config)) == config
    assert type(config)(**config.to_dict()) == config
    assert method.description, f"{name} needs a one-line description"


@pytest.mark.parametrize("name", ALL)
def test_merged_evaluation_computes_what_the_method_computes(name, tiny_batch):
    """A method that merges (``Method.merge``) gives the same outputs merged, and leaves its weights exactly as
    they were after; one that cannot merge says so with None."""
    from aurora.api import merged

    method, model = adapted(name)
    with torch.no_grad():  # off the identity start, so a wrong merge shows
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = outputs(model, tiny_batch)
    with merged(method, model):
        fused = outputs(model, tiny_batch)
    for got, want in zip(fused, plain):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
