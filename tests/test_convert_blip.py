"""`aurora-bench convert-blip`: original Salesforce BLIP checkpoints -> transformers folders the `hf` backbone loads.

The sources are tiny transformers BLIP models written back into the ORIGINAL BLIP layout by the inverse mapping
below (written here from BLIP's models/vit.py and med.py names, independently of the converter), with what the
original files carry besides (momentum encoders, queues, `temp`, position-id buffers). A conversion must give
back the same weights and the same model outputs.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suites.backbones import build_backbone
from suites.backbones.blip import CONVERSION_INFO, blip_base_config, blip_config, from_config, model_class
from suites.backbones.convert import BLIP_MEAN, BLIP_STD, conversion_config, hf_name, image_size_of
from suites.cli import main
from suites.tasks.passes import image_grounded, visual_tokens
from suites.tasks.retrieval import encode_images, encode_texts, fused_cls, itm_logits

TINY = dict(hidden=32, layers=2, heads=2, mlp=64, image_size=32, patch=16, vocab_size=64, proj=16)
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("a an the of on in at to and is are what which how many color colour there this that it cat cats dog "
         "dogs man woman person red blue green white black yellow two three one four sitting standing table "
         "bed grass beach water picture photo with near top left right small big yes no sky").split()
TEMP = 0.0432

# ---------------------------------------------------------------- the inverse mapping (transformers -> BLIP)

# BLIP's ViT is timm's VisionTransformer (models/vit.py): cls_token, pos_embed, patch_embed.proj,
# blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm.
_VIT_EMBEDDINGS = {"class_embedding": "cls_token", "position_embedding": "pos_embed"}
_VIT_BLOCK = {"self_attn.qkv": "attn.qkv", "self_attn.projection": "attn.proj", "layer_norm1": "norm1",
              "layer_norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}


def original_name(name: str) -> str:
    """A transformers BLIP weight name -> the name BLIP's own code gives it."""
    if not name.startswith("vision_model."):
        return name  # text_encoder, text_decoder (bert + cls), vision_proj, text_proj, itm_head: same names
    rest = name.removeprefix("vision_model.")
    module, _, leaf = rest.rpartition(".")
    if rest.startswith("embeddings.") and leaf in _VIT_EMBEDDINGS:
        return "visual_encoder." + _VIT_EMBEDDINGS[leaf]
    if module == "embeddings.patch_embedding":
        return f"visual_encoder.patch_embed.proj.{leaf}"
    if module == "post_layernorm":
        return f"visual_encoder.norm.{leaf}"
    _, _, index, sub = module.split(".", 3)  # encoder.layers.N.<sub>
    return f"visual_encoder.blocks.{index}.{_VIT_BLOCK[sub]}.{leaf}"


def original_layout(model) -> dict[str, torch.Tensor]:
    state = {original_name(k): v.detach().clone() for k, v in model.state_dict().items()}
    for prefix in ("text_encoder", "text_decoder.bert"):  # med.py registers position_ids as a saved buffer
        if f"{prefix}.embeddings.word_embeddings.weight" in state:
            state[f"{prefix}.embeddings.position_ids"] = torch.arange(64).expand(1, -1)
    return state


def momentum_and_queues(state: dict, gen: torch.Generator, ptr: str = "ptr_queue") -> dict[str, torch.Tensor]:
    """BLIP_Retrieval's (and BLIP_Pretrain's) extra state: *_m copies (deliberately not equal to the online
    weights, so loading one by mistake shows), feature queues, and temp."""
    extra = {}
    for key, value in state.items():
        module, _, rest = key.partition(".")
        if module in ("visual_encoder", "text_encoder", "vision_proj", "text_proj"):
            noise = torch.randn(value.shape, generator=gen) if value.is_floating_point() else 0
            extra[f"{module}_m.{rest}"] = value + noise
    queue = 57
    extra |= {"image_queue": F.normalize(torch.randn(16, queue, generator=gen), dim=0),
              "text_queue": F.normalize(torch.randn(16, queue, generator=gen), dim=0),
              ptr: torch.zeros(1, dtype=torch.long), "temp": torch.tensor(TEMP)}
    if ptr == "ptr_queue":
        extra["idx_queue"] = torch.full((1, queue), -100)
    return extra


def test_inverse_mapping_gives_blip_names():
    state = original_layout(from_config(blip_config(**TINY), task="vqa"))
    for name in ("visual_encoder.cls_token", "visual_encoder.pos_embed", "visual_encoder.patch_embed.proj.weight",
                 "visual_encoder.blocks.1.attn.qkv.bias", "visual_encoder.blocks.1.attn.proj.weight",
                 "visual_encoder.blocks.0.norm2.weight", "visual_encoder.blocks.0.mlp.fc2.bias",
                 "visual_encoder.norm.bias", "text_encoder.encoder.layer.1.crossattention.self.key.weight",
                 "text_decoder.cls.predictions.decoder.weight", "text_decoder.cls.predictions.bias"):
        assert name in state, name
    assert not any(k.startswith("vision_model") for k in state)
    # the converter's forward mapping, spot-checked against spec §7.1
    assert hf_name("visual_encoder.blocks.11.attn.proj.weight") == "vision_model.encoder.layers.11.self_attn.projection.weight"
    assert hf_name("visual_encoder.norm.weight") == "vision_model.post_layernorm.weight"
    assert hf_name("itm_head.bias") == "itm_head.bias"


@pytest.mark.parametrize("task", ["retrieval", "vqa"])
def test_mapping_covers_blip_base(task):
    """Every weight of the BLIP-base transformers model has an original name the converter maps back to it
    (on the meta device: nothing allocated)."""
    with torch.device("meta"):
        model = model_class(task)(blip_base_config(task))
    names = list(model.state_dict())
    assert len(names) > 300
    assert [hf_name(original_name(k)) for k in names] == names


# ---------------------------------------------------------------- fixtures: sources, tokenizer, config


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny config JSON, the --tokenizer folder (vocab.txt only) and the source models."""
    root = tmp_path_factory.mktemp("convert")
    config = root / "tiny_blip.json"
    blip_config(**TINY).to_json_file(str(config))
    vocab = root / "bert"
    vocab.mkdir()
    words = SPECIALS + WORDS
    assert len(words) == TINY["vocab_size"] - 2  # + [DEC] + [ENC] = the word-embedding rows
    (vocab / "vocab.txt").write_text("\n".join(words) + "\n")

    retrieval = from_config(blip_config(**TINY), seed=1, task="retrieval")
    vqa = from_config(blip_config(**TINY), seed=2, task="vqa")
    shared = {k: v for k, v in retrieval.state_dict().items() if k.startswith(("vision_model.", "text_encoder."))}
    vqa.load_state_dict(shared, strict=False)  # pretraining: one ViT and text encoder, plus heads and a decoder
    gen = torch.Generator().manual_seed(0)

    sources = root / "sources"
    sources.mkdir()
    finetuned = original_layout(retrieval)
    torch.save({"model": finetuned | momentum_and_queues(finetuned, gen),
                "config": {"image_size": 32, "queue_size": 57, "k_test": 4}, "epoch": 5},
               sources / "model_base_retrieval_tiny.pth")
    torch.save({"model": original_layout(vqa), "config": {"image_size": 32}}, sources / "model_vqa_tiny.pth")
    heads = {k: v for k, v in original_layout(retrieval).items() if k.startswith(("vision_proj", "text_proj", "itm_head"))}
    pretrain = original_layout(vqa) | heads
    torch.save(pretrain | momentum_and_queues(pretrain, gen, ptr="queue_ptr"), sources / "model_base_tiny.pth")  # bare
    return {"config": config, "tokenizer": vocab, "retrieval": retrieval, "vqa": vqa, "dir": sources}


def convert(capsys, files, source: str, out, task: str, *extra: str) -> tuple[int, str, str]:
    code = main(["convert-blip", str(files["dir"] / source), str(out), "--task", task,
                 "--config", str(files["config"]), "--tokenizer", str(files["tokenizer"]), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def images(n: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


CAPTIONS = ["a cat sitting on the table", "two dogs on the beach", "a man with a red picture", "what color is it"]


def assert_same_weights(model, reference, skip=()):
    got, want = model.state_dict(), reference.state_dict()
    assert set(got) == set(want)
    for k in want:
        if k not in skip:
            assert torch.equal(got[k], want[k]), k


def retrieval_outputs(model, backbone, pixels):
    tok = backbone.tokenize(CAPTIONS)
    with torch.no_grad():
        tokens, image_feat = encode_images(model, pixels)
        _, text_feat = encode_texts(model, tok["input_ids"], tok["attention_mask"])
        fused = fused_cls(model, tokens, tok["input_ids"], tok["attention_mask"], backbone.enc_token_id)
        return image_feat @ text_feat.T, itm_logits(model, fused)


def answer_logits(model, backbone, pixels):
    q = backbone.tokenize(["what color is the cat", "how many dogs are there"])
    a = backbone.tokenize(["red", "two dogs"])
    a_ids = a["input_ids"].clone()
    a_ids[:, 0] = backbone.model.config.text_config.bos_token_id  # [DEC], from the converted tokenizer
    with torch.no_grad():
        states = image_grounded(model, visual_tokens(model, pixels), q["input_ids"], q["attention_mask"],
                                backbone.enc_token_id)
        return model.text_decoder(input_ids=a_ids, attention_mask=a["attention_mask"], encoder_hidden_states=states,
                                  encoder_attention_mask=q["attention_mask"]).logits


# ---------------------------------------------------------------- round trips


def test_retrieval_checkpoint_round_trip(capsys, files, tmp_path):
    out = tmp_path / "blip-retrieval"
    code, stdout, stderr = convert(capsys, files, "model_base_retrieval_tiny.pth", out, "retrieval")
    assert code == 0, stderr
    backbone = build_backbone(str(out), task="retrieval")
    reference = files["retrieval"]
    assert_same_weights(backbone.model, reference)

    pixels = backbone.pixels(images(len(CAPTIONS)))  # ITM: image i with caption i
    sims, itm = retrieval_outputs(backbone.model, backbone, pixels)
    ref_sims, ref_itm = retrieval_outputs(reference, backbone, pixels)
    assert torch.equal(sims, ref_sims) and torch.equal(itm, ref_itm)

    assert backbone.temp == pytest.approx(TEMP) and backbone.temp != 0.07
    assert json.loads((out / CONVERSION_INFO).read_text())["itc_temperature"] == pytest.approx(TEMP)
    # what was dropped is listed: momentum copies by module, queues and buffers by name
    assert "momentum encoders" in stdout and "visual_encoder_m (" in stdout and "text_proj_m (2)" in stdout
    assert "feature queues: idx_queue, image_queue, ptr_queue, text_queue" in stdout
    assert "text_encoder.embeddings.position_ids" in stdout
    assert f"ITC temperature temp = {TEMP:.6g}" in stdout
    assert "image size 32 px, from --config" in stdout

    # tokenizer and processor: BERT vocabulary + [DEC] (bos) 62 + [ENC] 63, BLIP's normalisation
    assert backbone.enc_token_id == 63 and backbone.model.config.text_config.bos_token_id == 62
    assert "[DEC] 62 (bos) + [ENC] 63" in stdout
    ids = backbone.tokenize(["What colour is the CAT?"])["input_ids"][0].tolist()
    vocab = SPECIALS + WORDS
    assert ids == [vocab.index(t) for t in ("[CLS]", "what", "colour", "is", "the", "cat", "[UNK]", "[SEP]")]
    assert backbone.image_mean == pytest.approx(BLIP_MEAN) and backbone.image_std == pytest.approx(BLIP_STD)
    processor = json.loads((out / "processor_config.json").read_text())["image_processor"]
    assert processor["resample"] == 3 and processor["size"] == {"height": 32, "width": 32}  # bicubic


def test_vqa_checkpoint_round_trip(capsys, files, tmp_path):
    out = tmp_path / "blip-vqa"
    code, stdout, stderr = convert(capsys, files, "model_vqa_tiny.pth", out, "vqa")
    assert code == 0, stderr
    backbone = build_backbone(str(out), task="vqa")
    reference = files["vqa"]
    assert_same_weights(backbone.model, reference)
    pixels = backbone.pixels(images(2))
    got, want = answer_logits(backbone.model, backbone, pixels), answer_logits(reference, backbone, pixels)
    assert got.shape == (2, 4, TINY["vocab_size"]) and torch.equal(got, want)
    assert backbone.model.config.text_config.bos_token_id == 62 and backbone.enc_token_id == 63
    assert "no ITC temperature" in stdout and backbone.temp == 0.07
    assert "itc_temperature" not in json.loads((out / CONVERSION_INFO).read_text())
    assert "text_decoder.bert.embeddings.position_ids" in stdout


@pytest.mark.parametrize(("task", "dropped"), [("retrieval", "text_decoder ("), ("vqa", "itm_head (2)")])
def test_pretraining_checkpoint_serves_both_tasks(capsys, files, tmp_path, task, dropped):
    """model_base.pth has the ITC/ITM heads and a text decoder: each task keeps what its model has."""
    out = tmp_path / task
    code, stdout, stderr = convert(capsys, files, "model_base_tiny.pth", out, task)
    assert code == 0, stderr
    assert f"modules the {task} model has no place for: " in stdout and dropped in stdout
    assert "queue_ptr" in stdout
    backbone = build_backbone(str(out), task=task)
    assert_same_weights(backbone.model, files[task])
    assert backbone.temp == pytest.approx(TEMP)


def test_image_size_is_inferred_or_resized(capsys, files, tmp_path):
    # no --config: BLIP-base at the size the position embeddings give (480 px VQA: 1 + 30*30)
    state = {"visual_encoder.pos_embed": torch.zeros(1, 1 + 30 * 30, 8)}
    assert image_size_of(state) == 480
    config, note, grid = conversion_config(None, "vqa", state, None)
    assert config.vision_config.image_size == 480 and grid == 30 and "inferred" in note
    assert config.vision_config.hidden_size == 768 and config.text_config.num_attention_heads == 12

    # --image-size: the position grid resized bicubically ([CLS] kept), as BLIP's load_checkpoint
    out = tmp_path / "vqa48"
    code, stdout, stderr = convert(capsys, files, "model_vqa_tiny.pth", out, "vqa", "--image-size", "48")
    assert code == 0, stderr
    assert "resized from 2x2 to 3x3 patches" in stdout
    backbone = build_backbone(str(out), task="vqa")
    assert backbone.image_size == 48
    pos = files["vqa"].vision_model.embeddings.position_embedding.detach()
    grid = pos[:, 1:].reshape(1, 2, 2, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(3, 3), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 9, -1)
    want = torch.cat([pos[:, :1], grid], dim=1)
    assert torch.allclose(backbone.model.vision_model.embeddings.position_embedding, want)
    assert_same_weights(backbone.model.text_decoder, files["vqa"].text_decoder)
    assert answer_logits(backbone.model, backbone, backbone.pixels(images(1, 48))).isfinite().all()


# ---------------------------------------------------------------- one-line errors


def _pickled(files, path):
    state = torch.load(files["dir"] / "model_vqa_tiny.pth", weights_only=True)["model"]
    torch.save({"model": state, "config": argparse.Namespace(image_size=32)}, path)  # needs full unpickling


def _missing_weight(files, path):
    state = torch.load(files["dir"] / "model_vqa_tiny.pth", weights_only=True)["model"]
    del state["text_encoder.encoder.layer.1.output.dense.weight"]
    torch.save(state, path)


@pytest.mark.parametrize(("case", "needle"), [
    ("pickle", "cannot be loaded with torch.load(weights_only=True) (it pickles argparse.Namespace)"),
    ("vqa-as-retrieval", "has no vision_proj (the ITC image projection), text_proj (the ITC text projection), "
                         "itm_head (the ITM head), which --task retrieval needs"),
    ("retrieval-as-vqa", "has no text_decoder (the answer decoder), which --task vqa needs: it looks like a "
                         "retrieval checkpoint"),
    ("no-tokenizer", "--tokenizer DIR is required"),
    ("small-vocab", "the tokenizer has 12 tokens with [DEC] and [ENC], the checkpoint's word embeddings 64 rows"),
    ("wrong-config", "weights do not fit the model's shapes"),
    ("missing-weight", "lacks 1 weights the model needs, e.g. text_encoder.encoder.layer.1.output.dense.weight"),
    ("no-file", "does not exist"),
])
def test_bad_input_gives_one_clear_line(capsys, files, tmp_path, case, needle):
    source, task = files["dir"] / "model_vqa_tiny.pth", "vqa"
    extra = ["--config", str(files["config"]), "--tokenizer", str(files["tokenizer"])]
    if case == "pickle":
        source = tmp_path / "pickled.pth"
        _pickled(files, source)
    elif case == "vqa-as-retrieval":
        task = "retrieval"
    elif case == "retrieval-as-vqa":
        source = files["dir"] / "model_base_retrieval_tiny.pth"
    elif case == "no-tokenizer":
        extra = extra[:2]
    elif case == "small-vocab":
        (tmp_path / "bert").mkdir()
        (tmp_path / "bert" / "vocab.txt").write_text("\n".join(SPECIALS + WORDS[:5]) + "\n")
        extra[3] = str(tmp_path / "bert")
    elif case == "wrong-config":
        blip_config(**(TINY | {"hidden": 48})).to_json_file(str(tmp_path / "wrong.json"))
        extra[1] = str(tmp_path / "wrong.json")
    elif case == "missing-weight":
        source = tmp_path / "incomplete.pth"
        _missing_weight(files, source)
    elif case == "no-file":
        source = tmp_path / "model_nothing.pth"
    out = tmp_path / "out"
    code = main(["convert-blip", str(source), str(out), "--task", task, *extra])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and needle in lines[0], err
    assert not out.exists()  # nothing written
