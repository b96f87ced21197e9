"""Proxy-tier QA: synthetic questions are true of their scenes, the VQA backbone grows from the retrieval
proxy (and caches), and proxy-vqa runs as a trial."""

import numpy as np
import pytest
import torch

from aurora.api import TargetingError
from suites.backbones import Backbone
from suites.backbones.blip import blip_config, from_config
from suites.engine.loop import TrainConfig
from suites.orchestration.trial import TrialSpec, build_trial, run_trial
from suites.synthetic import qa, world
from suites.synthetic.pretrain import PretrainConfig, ProxyModelConfig, tokenizer
from suites.synthetic.pretrain_vqa import QAPretrainConfig, grow, load_or_pretrain_vqa


def test_answers_are_true_of_the_scene():
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = world.sample_scene(rng, world.Shift(held_out_pairs=True))
        objs = {o.key: o for o in scene.objects}
        for item in qa.ask(scene, rng, world.Shift(), 6):
            words = item.question.split()
            if item.kind == "count":
                assert item.answer == str(len(scene.objects))
            elif item.kind == "exists":
                color, shape = words[-3:-1]
                assert item.answer == ("yes" if (color, shape) in objs else "no"), item
            elif item.kind == "where":
                assert item.answer == world.CELLS[objs[tuple(words[-3:-1])].cell]
            elif item.kind == "relation":
                a, b = objs[tuple(words[2:4])], objs[tuple(words[-3:-1])]
                truth = a.cell % 3 < b.cell % 3 if "left" in words else a.cell // 3 < b.cell // 3
                assert item.answer == ("yes" if truth else "no"), item
            assert item.answer in qa.ANSWER_LIST


def test_splits_are_deterministic_and_annotated_like_vqav2():
    a = qa.make_qa_split(3, 20, 4, world.Shift())
    b = qa.make_qa_split(3, 20, 4, world.Shift())
    assert a.questions == b.questions and a.answers == b.answers and np.array_equal(a.images, b.images)
    assert all(len(ans) == 10 for ans in a.answers)
    data = qa.vqa_data(a)
    assert all(abs(sum(w) - 1) < 1e-9 for _, w in data.targets)
    # every question word is in the grown tokenizer's vocabulary
    words = set(world.vocabulary()) | set(qa.vocabulary())
    shifted = qa.make_qa_split(3, 20, 4, world.Shift(new_template_frac=1.0, synonym_frac=0.5))
    assert {w for q in a.questions + shifted.questions for w in q.split()} <= words


def _tiny_retrieval_backbone():
    tok = tokenizer()
    model = from_config(blip_config(hidden=32, layers=2, heads=2, mlp=64, vocab_size=tok.vocab_size, proj=16))
    return Backbone(model, tok, enc_token_id=tok.enc_token_id, image_size=48, max_text_length=32)


def test_grow_copies_both_towers_and_starts_the_decoder_from_the_encoder():
    retrieval = _tiny_retrieval_backbone()
    vqa = grow(retrieval)
    old, new = retrieval.model.state_dict(), vqa.model.state_dict()
    torch.testing.assert_close(new["vision_model.encoder.layers.1.mlp.fc1.weight"], old["vision_model.encoder.layers.1.mlp.fc1.weight"])
    key = "encoder.layer.0.crossattention.self.query.weight"
    torch.testing.assert_close(new[f"text_encoder.{key}"], old[f"text_encoder.{key}"])
    torch.testing.assert_close(new[f"text_decoder.bert.{key}"], old[f"text_encoder.{key}"])
    n_old = retrieval.tokenizer.vocab_size
    emb = vqa.model.text_encoder.embeddings.word_embeddings.weight
    assert emb.shape[0] == vqa.tokenizer.vocab_size > n_old
    torch.testing.assert_close(emb[:n_old], old["text_encoder.embeddings.word_embeddings.weight"])
    decoder = vqa.model.text_decoder
    assert decoder.cls.predictions.decoder.weight is decoder.bert.embeddings.word_embeddings.weight
    assert vqa.tokenizer.id_to_token[:n_old] == retrieval.tokenizer.id_to_token  # old ids unchanged


def test_vqa_backbone_pretrains_once_then_loads_from_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AURORA_CACHE", str(tmp_path))
    small = ProxyModelConfig(hidden=32, layers=1, heads=2, mlp=64, proj=16)
    cfg = QAPretrainConfig(
        n_images=40, questions_per_image=2, eval_images=8,
        retrieval=PretrainConfig(n_images=40, eval_images=8, model=small,
                                 train=TrainConfig(steps=2, batch_size=8, warmup=1, eval_every=1), k_test=2),
        train=TrainConfig(steps=3, batch_size=8, warmup=1, eval_every=1), k_test=2,
    )
    first = load_or_pretrain_vqa(cfg=cfg, progress=False)
    second = load_or_pretrain_vqa(cfg=cfg, progress=False)
    assert "cached" in second.source and 0.0 <= second.info["pretrain_accuracy"] <= 100.0
    for (n, p), (_, q) in zip(first.model.named_parameters(), second.model.named_parameters()):
        torch.testing.assert_close(p, q, msg=n)


@pytest.mark.slow
def test_proxy_vqa_trial_on_the_tiny_backbone(tmp_path):
    spec = TrialSpec(method="lora", benchmark="proxy-vqa", backbone="test-tiny", output_dir=str(tmp_path),
                     benchmark_options={"train_images": 16, "val_images": 4, "test_images": 6, "k_test": 3},
                     train={"steps": 2, "batch_size": 8, "warmup": 1, "eval_every": 1})
    record = run_trial(spec)
    assert record.task == "vqa" and record.primary_metric == "accuracy"
    assert 0.0 <= record.metrics["accuracy"] <= 100.0 and "accuracy_count" in record.metrics
    assert [h["step"] for h in record.history] == [1, 2] and "val_accuracy" in record.history[0]


def test_clip_questions_follow_the_colour_changes():
    from suites.synthetic import clips

    rng = np.random.default_rng(1)
    kinds = set()
    for _ in range(100):
        clip = clips.sample_clip_group(rng, int(rng.integers(1, 4)))[0]
        by_shape = {a.obj.shape: a for a in clip.actors}
        for item in qa.ask_clip(clip, rng, world.Shift(), 4):
            kinds.add(item.kind)
            shape = next((w for w in item.question.split() if w in by_shape), None)
            if item.kind == "changing":
                assert item.answer == ("yes" if by_shape[shape].changes else "no")
            elif item.kind == "changing_count":
                assert item.answer == str(sum(a.changes for a in clip.actors))
            else:  # colour questions only about objects that keep one colour
                assert not by_shape[shape].changes and item.answer == by_shape[shape].obj.color
    assert kinds == set(qa.CLIP_KINDS)


@pytest.mark.slow
def test_proxy_msrvttqa_trial_on_the_tiny_backbone(tmp_path):
    spec = TrialSpec(method="lora", benchmark="proxy-msrvttqa", backbone="test-tiny", output_dir=str(tmp_path),
                     benchmark_options={"train_clips": 8, "val_clips": 2, "test_clips": 4, "n_frames": 3},
                     train={"steps": 2, "batch_size": 4, "warmup": 1, "eval_every": 2})
    record = run_trial(spec)
    assert 0.0 <= record.metrics["accuracy"] <= 100.0 and "accuracy_changing" in record.metrics


def test_a_method_with_nothing_to_train_on_vqa_fails_before_training(tmp_path):
    spec = TrialSpec(method="heads_only", benchmark="proxy-vqa", backbone="test-tiny", output_dir=str(tmp_path),
                     benchmark_options={"train_images": 8, "val_images": 2, "test_images": 2})
    with pytest.raises(TargetingError, match="heads_only leaves nothing to train on proxy-vqa .*heads: none"):
        build_trial(spec)
