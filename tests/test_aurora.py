"""Aurora's math against hand computations, and its parameter count against the spec's formula."""

import pytest
import torch

import aurora
from aurora.method.layer import MlpIn, MlpOut, TextLinear, ViTLinear
from suites.backbones import build_backbone


def apply(rank=8, **options):
    backbone = build_backbone("test-tiny", hidden=32, mlp=128)
    torch.manual_seed(0)
    aurora.create_method("aurora", rank=rank, **options).apply(backbone.model)
    return backbone.model.eval()


def test_delta_of_one_weight_is_u_m_vt():
    model = apply(rank=4, dropout=0.0)
    shared = model.aurora_shared
    torch.nn.init.normal_(shared.V.weight)  # V = 0 at init would make the check trivial
    layer = model.text_encoder.encoder.layer[0].attention.self.query
    assert isinstance(layer, TextLinear)
    U, V, G, p = shared.U.weight.T, shared.V.weight, shared.core, layer.aurora_p[:, 0]
    M = sum(p[c] * G[:, :, c] for c in range(4))
    delta_w = U @ M @ V.T  # (d, d), acting on row vectors: x @ delta_w
    x = torch.randn(5, 32)
    torch.testing.assert_close(layer(x), layer.base(x) + x @ delta_w)


def test_vit_qkv_delta_per_column():
    model = apply(rank=4, dropout=0.0)
    shared = model.aurora_shared
    torch.nn.init.normal_(shared.V.weight)
    qkv = model.vision_model.encoder.layers[0].self_attn.qkv
    assert isinstance(qkv, ViTLinear)
    x = torch.randn(3, 32)
    out = qkv(x) - qkv.base(x)
    for j in range(3):
        M = torch.einsum("abc,c->ab", shared.core, qkv.p[:, j])
        torch.testing.assert_close(out[:, j * 32:(j + 1) * 32], x @ shared.U.weight.T @ M @ shared.V.weight.T)


def official_draws(seed: int, rank: int, d: int, blocks: int, mlp_chunks: int = 4):
    """The official code's Aurora tensors (``CP/blip_vqa.py``, ``CP/vit.py``), drawn in its order under ``seed``:
    CP_U, CP_V (zeroed), CP_C, then block by block the attention's R x 4 ``CP_attention`` and the MLP's R x 8
    ``mlp_CP``, each ``torch.zeros`` then ``nn.init.xavier_uniform_`` (the frozen Linear layers' inits, which the
    official code draws in between and overwrites with pretrained weights, left out)."""
    torch.manual_seed(seed)
    U = torch.nn.Linear(d, rank, bias=False).weight.detach()
    torch.nn.Linear(rank, d, bias=False)
    core = torch.nn.init.xavier_uniform_(torch.zeros(rank, rank, rank))
    vit = []
    for _ in range(blocks):
        attention = torch.nn.init.xavier_uniform_(torch.zeros(rank, 4))
        mlp = torch.nn.init.xavier_uniform_(torch.zeros(rank, 2 * mlp_chunks))
        vit.append((attention, mlp))
    return U, core, vit


def test_vit_mode_vectors_are_the_official_draws():
    seed, rank = 7, 8
    backbone = build_backbone("test-tiny", hidden=32, mlp=128)
    torch.manual_seed(seed)
    aurora.create_method("aurora", rank=rank).apply(backbone.model)
    model = backbone.model
    U, core, vit = official_draws(seed, rank, d=32, blocks=2)
    assert torch.equal(model.aurora_shared.U.weight, U) and torch.equal(model.aurora_shared.core, core)
    blocks = model.vision_model.encoder.layers
    assert len(blocks) == len(vit)
    for block, (attention, mlp) in zip(blocks, vit):
        assert torch.equal(block.self_attn.aurora_p_attention, attention)
        assert torch.equal(block.mlp.aurora_p_mlp, mlp)
        # each wrapped layer reads its columns of its block's one tensor, as views of it
        for layer, owner, columns in ((block.self_attn.qkv, block.self_attn.aurora_p_attention, slice(0, 3)),
                                      (block.self_attn.projection, block.self_attn.aurora_p_attention, slice(3, 4)),
                                      (block.mlp.fc1, block.mlp.aurora_p_mlp, slice(0, 4)),
                                      (block.mlp.fc2, block.mlp.aurora_p_mlp, slice(4, 8))):
            assert torch.equal(layer.p, owner[:, columns])
            assert layer.p.data_ptr() == owner[:, columns].data_ptr()
    # registered once per block: nothing per wrapped layer
    names = [n for n, _ in model.named_parameters() if "vision_model" in n and "aurora" in n]
    assert len(names) == 2 * len(blocks) and all(n.endswith(("aurora_p_attention", "aurora_p_mlp")) for n in names)


@pytest.mark.parametrize(("site", "tensor", "columns"), [
    ("self_attn.qkv", "self_attn.aurora_p_attention", (0, 3)),
    ("self_attn.projection", "self_attn.aurora_p_attention", (3, 4)),
    ("mlp.fc1", "mlp.aurora_p_mlp", (0, 4)),
    ("mlp.fc2", "mlp.aurora_p_mlp", (4, 8)),
])
def test_vit_gradient_lands_in_the_layer_columns_only(site, tensor, columns):
    model = apply(rank=4, dropout=0.0)
    torch.nn.init.normal_(model.aurora_shared.V.weight)  # V = 0 would zero every mode-vector gradient
    block = model.vision_model.encoder.layers[1]
    layer = block.get_submodule(site)
    assert isinstance(layer, (ViTLinear, MlpIn, MlpOut))
    layer(torch.randn(3, layer.base.in_features)).square().sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "aurora_p" in n}
    grad = block.get_parameter(tensor).grad
    assert grad is not None
    first, end = columns
    assert grad[:, first:end].abs().min() > 0
    assert torch.count_nonzero(grad[:, :first]) == 0 and torch.count_nonzero(grad[:, end:]) == 0
    assert [n for n, g in grads.items() if g is not None] == [f"vision_model.encoder.layers.1.{tensor}"]


def test_partial_vision_targets_keep_the_official_values_of_their_columns():
    """Both block tensors are drawn in full whatever the targets; only the targeted columns are kept."""
    full = apply(rank=8)
    part = apply(rank=8, vision_targets=("qkv", "fc2"))
    for a, b in zip(full.vision_model.encoder.layers, part.vision_model.encoder.layers):
        assert torch.equal(b.self_attn.aurora_p_attention, a.self_attn.aurora_p_attention[:, :3])
        assert torch.equal(b.mlp.aurora_p_mlp, a.mlp.aurora_p_mlp[:, 4:])
        assert torch.equal(b.self_attn.qkv.p, a.self_attn.qkv.p) and torch.equal(b.mlp.fc2.p, a.mlp.fc2.p)
        assert not isinstance(b.self_attn.projection, ViTLinear) and not isinstance(b.mlp.fc1, MlpIn)
    for a, b in zip(full.text_encoder.encoder.layer, part.text_encoder.encoder.layer):  # same stream after
        assert torch.equal(b.attention.self.query.aurora_p, a.attention.self.query.aurora_p)


def test_cp_equals_dense_with_superdiagonal_core():
    dense, cp = apply(rank=4, core="dense", dropout=0.0), apply(rank=4, core="cp", dropout=0.0)
    lam = torch.randn(4)
    with torch.no_grad():
        dense.aurora_shared.core.zero_()
        for r in range(4):
            dense.aurora_shared.core[r, r, r] = lam[r]
        cp.aurora_shared.core.copy_(lam)
        cp.aurora_shared.U.weight.copy_(dense.aurora_shared.U.weight)
        for m in (dense, cp):
            torch.nn.init.ones_(m.aurora_shared.V.weight)
        for (n1, p1), (_, p2) in zip(dense.named_parameters(), cp.named_parameters()):
            if "aurora_p" in n1:
                p2.copy_(p1)
    x = torch.randn(2, 3, 32, 32)
    a = dense.vision_model(pixel_values=x).last_hidden_state
    b = cp.vision_model(pixel_values=x).last_hidden_state
    torch.testing.assert_close(a, b)


def test_exactly_identity_without_gqt():
    reference = build_backbone("test-tiny", hidden=32, mlp=128).model
    model = apply(gqt=False)
    x = torch.randn(2, 3, 32, 32)
    ids = torch.randint(4, 60, (2, 6))
    img = reference.vision_model(pixel_values=x).last_hidden_state
    assert torch.equal(model.vision_model(pixel_values=x).last_hidden_state, img)
    kwargs = dict(input_ids=ids, encoder_hidden_states=img)
    assert torch.equal(model.text_encoder(**kwargs).last_hidden_state, reference.text_encoder(**kwargs).last_hidden_state)


def test_gqt_only_in_image_grounded_passes():
    model = apply(gqt=True)
    gqt = model.text_encoder.encoder.layer[0].aurora_gqt
    with torch.no_grad():
        gqt.aurora_gqt.fill_(1.0)
    ref = build_backbone("test-tiny", hidden=32, mlp=128).model
    ids = torch.randint(4, 60, (2, 6))
    img = torch.randn(2, 5, 32)
    assert torch.equal(model.text_encoder(input_ids=ids).last_hidden_state,
                       ref.text_encoder(input_ids=ids).last_hidden_state)
    grounded = dict(input_ids=ids, encoder_hidden_states=img)
    assert not torch.allclose(model.text_encoder(**grounded).last_hidden_state,
                              ref.text_encoder(**grounded).last_hidden_state)


VIT_COLUMNS = {"qkv": 3, "proj": 1, "fc1": 4, "fc2": 4}  # columns of the block tensors each target reads (c = 4)


def formula(rank: int, core: str, d: int, vit_layers: int, text_layers: int,
            vision_targets=tuple(VIT_COLUMNS)) -> int:
    """Aurora's trainable count: U, V and the core once; per ViT block the targeted columns of its two tensors,
    12 R with every target (attention R x 4: qkv 3, proj 1; MLP R x 8: fc1 4, fc2 4); 6 R (q, k, v of self- and
    cross-attention) plus GQT's 4 d per text layer; d and the layer counts as parameters (VQA: text layers of
    encoder + decoder). Untargeted columns are not created, so they do not count (qkv alone: 3 R per block)."""
    shared = 2 * d * rank + (rank**3 if core == "dense" else rank)
    per_block = rank * sum(VIT_COLUMNS[t] for t in vision_targets)
    return shared + vit_layers * per_block + text_layers * (6 * rank + 4 * d)


@pytest.mark.parametrize("rank", [16, 32, 64])
@pytest.mark.parametrize("core", ["dense", "cp"])
def test_count_matches_formula(rank, core):
    model = apply(rank=rank, core=core)
    assert aurora.param_report(model).method_trainable == formula(rank, core, d=32, vit_layers=2, text_layers=2)


@pytest.mark.parametrize("targets", [("qkv",), ("proj",), ("qkv", "fc2"), ("fc1",), ("proj", "fc1", "fc2")])
def test_count_with_partial_vision_targets(targets):
    """Only the targeted columns of the official tensors are parameters: the counts of one tensor per weight."""
    model = apply(rank=8, vision_targets=targets)
    assert aurora.param_report(model).method_trainable == formula(8, "dense", d=32, vit_layers=2, text_layers=2,
                                                                  vision_targets=targets)


@pytest.mark.parametrize("rank", [16, 32, 64])
def test_vqa_count_adds_the_answer_decoder(rank):
    backbone = build_backbone("test-tiny", task="vqa", hidden=32, mlp=128)
    aurora.create_method("aurora", rank=rank).apply(backbone.model)
    expected = formula(rank, "dense", d=32, vit_layers=2, text_layers=2 * 2)
    assert aurora.param_report(backbone.model).method_trainable == expected


def blip_base_on_meta(task: str, **options) -> torch.nn.Module:
    """The BLIP-base architecture without allocating its weights: enough to count parameters."""
    from transformers import BlipConfig

    from suites.backbones.blip import from_config

    with torch.device("meta"):
        model = from_config(BlipConfig(), task=task)
    aurora.create_method("aurora", **options).apply(model)
    return model


@pytest.mark.parametrize(("task", "core", "count", "total"), [
    ("retrieval", "dense", 125_696, 223_744_258),  # dense core: the paper's "0.1M"
    ("retrieval", "cp", 92_960, 223_744_258),  # CP core: R instead of R^3
    ("vqa", "dense", 164_864, 361_230_140),
    ("vqa", "cp", 132_128, 361_230_140),
])
def test_blip_base_counts_match_the_spec(task, core, count, total):
    report = aurora.param_report(blip_base_on_meta(task, rank=32, core=core))
    assert report.method_trainable == count
    assert report.total == total
    text_layers = 12 if task == "retrieval" else 24
    assert count == formula(32, core, d=768, vit_layers=12, text_layers=text_layers)


def _decode_last_token(model, enc, enc_mask, ids, cached: bool) -> torch.Tensor:
    """Logits of the last answer token: in one pass, or incrementally with a KV cache."""
    kwargs = dict(encoder_hidden_states=enc, encoder_attention_mask=enc_mask)
    if not cached:
        return model.text_decoder(input_ids=ids, **kwargs).logits[:, -1]
    first = model.text_decoder(input_ids=ids[:, :-1], use_cache=True, **kwargs)
    return model.text_decoder(input_ids=ids[:, -1:], cache=first.past_key_values, use_cache=True, **kwargs).logits[:, -1]


@pytest.mark.parametrize("mode", ["consistent", "official"])
def test_decode_delta_with_a_kv_cache(mode):
    backbone = build_backbone("test-tiny", task="vqa")
    model = backbone.model
    torch.manual_seed(0)
    aurora.create_method("aurora", rank=4, dropout=0.0, decode_delta=mode).apply(model)
    torch.nn.init.normal_(model.aurora_shared.V.weight)
    question = backbone.tokenize(["what colour is it", "how many"])
    with torch.no_grad():
        img = model.vision_model(pixel_values=torch.randn(2, 3, 32, 32)).last_hidden_state
        enc = model.text_encoder(input_ids=question["input_ids"], attention_mask=question["attention_mask"],
                                 encoder_hidden_states=img).last_hidden_state
        ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])
        full, step = (_decode_last_token(model, enc, question["attention_mask"], ids, cached) for cached in (False, True))
    if mode == "consistent":  # the delta reaches every token, cached or not: decoding matches training
        torch.testing.assert_close(step, full, atol=1e-5, rtol=0)
    else:  # the official mismatch: k, v of the new token lack the delta
        assert (step - full).abs().max() > 1e-4


def test_ice_shifts_positive_rows_only():
    method = aurora.create_method("aurora", ice_alpha=0.5)
    fused, text = torch.zeros(6, 4), torch.ones(3, 4) * 2
    hook = method.task_hooks()["itm_features"]
    assert hook == method.informative_context
    out = hook(fused, text, n_pos=2)
    assert torch.equal(out[:2], torch.ones(2, 4)) and torch.equal(out[2:], torch.zeros(4, 4))


def test_no_task_hook_without_ice():
    assert aurora.create_method("aurora", ice=False).task_hooks() == {}


def test_adapter_only_checkpoint_is_small_and_reloads_exactly(tmp_path):
    from aurora.api import train_heads
    from aurora.checkpoint import load_trained, save_trained
    from suites.benchmarks import RetrievalBenchmark

    backbone = build_backbone("blip-base")
    method = aurora.create_method("aurora", rank=32)
    method.apply(backbone.model)
    train_heads(backbone.model, RetrievalBenchmark.heads(backbone.model))
    path = save_trained(backbone.model, tmp_path / "aurora.safetensors", method, heads=False)
    assert path.stat().st_size <= 1_000_000  # 125,696 fp32 values + header

    def adapted(seed):
        torch.manual_seed(seed)
        model = build_backbone("test-tiny", hidden=32, mlp=128).model
        aurora.create_method("aurora", rank=4).apply(model)
        train_heads(model, RetrievalBenchmark.heads(model))
        return model.eval()

    model = adapted(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and "aurora" in name:
                p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, 3, 32, 32)
    expected = model.vision_model(pixel_values=x).last_hidden_state
    save_trained(model, tmp_path / "tiny.safetensors", heads=False)
    fresh = load_trained(adapted(1), tmp_path / "tiny.safetensors")
    assert torch.equal(fresh.vision_model(pixel_values=x).last_hidden_state, expected)
