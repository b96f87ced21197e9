"""The architecture map (``aurora.arch``): every method finds what it adapts through it, and no other file of
the method side names a BLIP class or module.

The models come straight from transformers, not from a harness backbone: a tiny BLIP with hidden d = 32, 2
layers per tower, MLP 64 and 32 px images in 16 px patches; every text layer has cross-attention.
"""

import dataclasses
import importlib
import pkgutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import BlipConfig, BlipForImageTextRetrieval, BlipForQuestionAnswering

import aurora
import baselines
from aurora import arch
from aurora.api import TargetingError
from aurora.arch import ARCHITECTURES, BLIP, architecture_of
from aurora.method.layer import TextLinear
from aurora.registry import METHODS
from baselines._peft import PeftMethod

ROOT = Path(__file__).resolve().parents[1]
D, LAYERS = 32, 2
TASKS = {"retrieval": BlipForImageTextRetrieval, "vqa": BlipForQuestionAnswering}


def all_methods() -> list[str]:
    # The baselines join the registry through an entry point of the installed distribution; importing them here
    # covers a checkout installed before that entry point existed too.
    for info in pkgutil.iter_modules(baselines.__path__, "baselines."):
        importlib.import_module(info.name)
    return aurora.list_methods()


ALL = all_methods()


def tiny(task: str = "retrieval", vision_mlp: int = 64, **text) -> nn.Module:
    vision = dict(hidden_size=D, intermediate_size=vision_mlp, num_hidden_layers=LAYERS, num_attention_heads=2,
                  image_size=32, patch_size=16, initializer_range=0.02)
    text = {**dict(vocab_size=64, hidden_size=D, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=2,
                   encoder_hidden_size=D, is_decoder=True, pad_token_id=0, bos_token_id=None, sep_token_id=None,
                   max_position_embeddings=64), **text}
    torch.manual_seed(0)
    return TASKS[task](BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=16)).eval()


def outputs(model: nn.Module, task: str) -> list[torch.Tensor]:
    """What the tasks read, through the map's accessors: image tokens, unimodal and image-grounded text states,
    then ITM logits (retrieval) or the decoder's logits (VQA)."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 64, (2, 6), generator=gen)
    ids[:, 0] = 1
    mask = torch.ones_like(ids)
    with torch.no_grad():
        image = arch.vision_tower(model)(pixel_values=torch.randn(2, 3, 32, 32, generator=gen)).last_hidden_state
        text = arch.text_encoder(model)(input_ids=ids, attention_mask=mask).last_hidden_state
        grounded = arch.text_encoder(model)(input_ids=ids, attention_mask=mask,
                                            encoder_hidden_states=image).last_hidden_state
        if task == "retrieval":
            last = arch.itm_head(model)(grounded[:, 0])
        else:
            last = arch.text_decoder(model)(input_ids=ids, encoder_hidden_states=grounded,
                                            encoder_attention_mask=mask).logits
    return [image, text, grounded, last]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", ALL)
def test_every_method_applies_through_the_map(name, task):
    reference = outputs(tiny(task), task)
    model = tiny(task)
    method = aurora.create_method(name)
    method.apply(model)
    if name not in ("frozen", "heads_only"):  # the two that train nothing of their own
        assert aurora.param_report(model).method_trainable > 0
    for ref, out in zip(reference, outputs(model, task)):
        assert out.shape == ref.shape
        if method.identity_at_init:  # Aurora's GQT starts at ~2e-4, not exactly zero
            torch.testing.assert_close(out, ref, atol=1e-3, rtol=0)


def test_accessors_find_the_towers_and_heads():
    retrieval, vqa = tiny("retrieval"), tiny("vqa")
    assert arch.vision_tower(retrieval) is retrieval.vision_model
    assert arch.text_encoder(retrieval) is retrieval.text_encoder
    assert arch.vision_projection(retrieval) is retrieval.vision_proj
    assert arch.text_projection(retrieval) is retrieval.text_proj
    assert arch.itm_head(retrieval) is retrieval.itm_head
    assert arch.head_names(retrieval) == ("vision_proj", "text_proj", "itm_head")
    assert arch.text_encoder(vqa) is vqa.text_encoder  # not the decoder's BERT
    assert arch.text_decoder(vqa) is vqa.text_decoder
    with pytest.raises(TargetingError, match="no text decoder"):
        arch.text_decoder(retrieval)
    with pytest.raises(TargetingError, match="no itm head 'itm_head'"):
        arch.itm_head(vqa)


def test_layers_come_in_module_order_with_the_decoder_told_apart():
    model = tiny("vqa")
    encoder, decoder = list(model.text_encoder.encoder.layer), list(model.text_decoder.bert.encoder.layer)
    assert BLIP.vit_layers(model) == list(model.vision_model.encoder.layers)
    assert BLIP.text_layers(model) == encoder + decoder
    assert BLIP.text_layers(model, decoder=False) == encoder
    assert BLIP.text_layers(model, decoder=True) == decoder
    assert [t.kind for t in BLIP.towers(model)] == ["vision", "text", "decoder"]
    assert all(BLIP.has_cross_attention(layer) for layer in encoder + decoder)
    assert BLIP.hidden_size(model) == D


def test_text_layers_without_cross_attention():
    model = tiny(is_decoder=False)
    assert not any(BLIP.has_cross_attention(layer) for layer in BLIP.text_layers(model))
    assert [kind for kind, _ in BLIP.attention_sublayers(BLIP.text_layers(model)[0])] == ["self"]
    aurora.create_method("aurora").apply(model)  # GQT finds no cross-attention to gate and adds nothing
    assert not any("aurora_gqt" in n for n, _ in model.named_parameters())


def test_unknown_model_type_names_it_and_the_known_ones():
    model = nn.Linear(2, 2)
    model.config = SimpleNamespace(model_type="clip")
    with pytest.raises(TargetingError, match=r"model_type 'clip' \(a Linear\); known model types: blip"):
        architecture_of(model)
    with pytest.raises(TargetingError, match="'clip'"):  # default peft targets come from the map
        aurora.create_method("lora").apply(model)
    with pytest.raises(TargetingError, match="model_type None"):
        architecture_of(nn.Module())


def test_peft_defaults_resolve_from_the_map_and_explicit_regexes_still_work():
    peft = [name for name in ALL if issubclass(METHODS.get(name), PeftMethod)]
    assert set(peft) == {"lora", "loha", "lokr", "ia3", "vera", "adalora"}
    assert all(aurora.create_method(name).config.target_modules == "" for name in peft)

    def lora_trainable(task, **options):
        model = tiny(task)
        aurora.create_method("lora", r=8, **options).apply(model)
        return aurora.param_report(model).method_trainable

    # per layer: ViT qkv 32 -> 96, and q/k/v of self- and cross-attention 32 -> 32 in every BERT
    assert lora_trainable("retrieval") == LAYERS * (8 * (D + 3 * D) + 6 * 8 * (D + D))
    assert lora_trainable("vqa") == LAYERS * (8 * (D + 3 * D) + 2 * 6 * 8 * (D + D))
    one_query = r".*text_encoder\.encoder\.layer\.0\.attention\.self\.query"
    assert lora_trainable("vqa", target_modules=one_query) == 8 * (D + D)


@pytest.fixture
def no_cross_attention():
    """A tiny BLIP whose architecture entry says its text layers never cross-attend."""
    variant = dataclasses.replace(BLIP, model_types=("blip-no-cross",),
                                  text=dataclasses.replace(BLIP.text, cross_attention=None))
    ARCHITECTURES._entries["blip-no-cross"] = variant
    model = tiny()
    model.config.model_type = "blip-no-cross"
    yield model
    del ARCHITECTURES._entries["blip-no-cross"]


def test_methods_that_need_cross_attention_say_so(no_cross_attention):
    with pytest.raises(TargetingError, match=r"GQT \(gqt=True\) and ICE \(ice=True\) need text cross-attention, "
                                             r"which architecture 'blip-no-cross' does not have"):
        aurora.create_method("aurora").apply(no_cross_attention)
    with pytest.raises(TargetingError, match="uniadapter: .*cross-attention.*'blip-no-cross'"):
        aurora.create_method("uniadapter").apply(no_cross_attention)


def test_aurora_without_gqt_and_ice_adapts_self_attention_only(no_cross_attention):
    aurora.create_method("aurora", gqt=False, ice=False).apply(no_cross_attention)
    wrapped = [m for m in no_cross_attention.modules() if isinstance(m, TextLinear)]
    assert len(wrapped) == LAYERS * 3  # q, k, v of self-attention; the cross targets find nothing


def test_aurora_mlp_chunking_needs_a_multiple_of_the_width():
    with pytest.raises(TargetingError, match=r"MLP chunking .* 'blip' ViT's MLP maps 32 -> 48"):
        aurora.create_method("aurora").apply(tiny(vision_mlp=48))
    aurora.create_method("aurora", vision_targets=("qkv", "proj")).apply(tiny(vision_mlp=48))


# BLIP's classes and module names as the methods spelled them before the map existed.
BLIP_NAMES = ("transformers.models.blip", "Blip", "crossattention", "self_attn", "layer_norm2", "layer_num",
              "embed_dim", "attention.self", "encoder.layer", ".bert", "vision_model", "text_encoder",
              "text_decoder", "vision_proj", "text_proj", "itm_head")


def method_side_sources() -> list[Path]:
    files = sorted((ROOT / "aurora").rglob("*.py")) + sorted((ROOT / "baselines").rglob("*.py"))
    return [path for path in files if path != ROOT / "aurora" / "arch.py"]


def test_only_the_map_names_blip_classes_and_modules():
    offenders = [f"{path.relative_to(ROOT)}: {name!r}" for path in method_side_sources()
                 for name in BLIP_NAMES if name in path.read_text()]
    assert not offenders, "name these through aurora.arch instead:\n" + "\n".join(offenders)


def test_aurora_imports_nothing_from_the_harness_or_the_baselines():
    imports = [f"{p.relative_to(ROOT)}: {line.strip()}" for p in sorted((ROOT / "aurora").rglob("*.py"))
               for line in p.read_text().splitlines()
               if line.lstrip().startswith(("from ", "import "))
               and line.split()[1].split(".")[0] in ("suites", "reports", "baselines")]
    assert not imports
