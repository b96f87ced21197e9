"""Data-parallel training: N processes at batch B compute what one process computes at batch N x B; evaluated,
they return what one process returns, each doing a share of the work.

The first tests start two gloo processes themselves (no Ray); the last runs a whole suite trial on two Ray Train
workers inside Ray Tune, as a researcher's multi-GPU trial runs, on CPUs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from suites.backbones import build_backbone
from suites.engine.data import load_batches
from suites.engine.loop import train_step, trainable_parameters
from suites.tasks.retrieval import LossSettings, RetrievalData, RetrievalObjective

CAPTIONS = ["a red circle", "two blue squares on the left", "a green ring", "nothing", "a small yellow star",
            "three red dots in a row at the top", "a big blue square", "one ring"]


def _setup(seed: int = 0, momentum=None):
    torch.manual_seed(seed)  # the same initial weights in every process
    backbone = build_backbone("test-tiny")
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    data = RetrievalData(images=images, texts=CAPTIONS * 2, txt2img=np.tile(np.arange(8), 2))
    # ITM's negatives are drawn from a global batch's similarities with the generator's stream: a different
    # draw with a different batch split. Its weight 0 leaves ITC's gradient to compare (ITM still runs).
    objective = RetrievalObjective(backbone, torch.tensor(0.1), LossSettings(itm_weight=0.0, momentum=momentum))
    return backbone, data, objective


def _one_step(rank: int, size: int, batch_size: int, folder: str) -> None:
    """On process ``rank`` of ``size``: one SGD step (lr 1: the weights move by minus the gradient), then one step
    of a fresh model with momentum distillation; each saves what the first process holds after it."""
    from suites.tasks.retrieval import MomentumSettings

    torch.set_num_threads(1)
    if size > 1:
        dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=size)
    for name, momentum in (("plain", None), ("distilled", MomentumSettings(queue_size=10))):
        backbone, data, objective = _setup(momentum=momentum)
        model = backbone.model.train()
        batches = load_batches(objective, data, batch_size, 1, np.random.default_rng(0), 0, rank=rank, processes=size)
        optimizer = torch.optim.SGD(trainable_parameters(model, objective), lr=1.0)
        objective.begin_step(model, 0, 1)
        losses = train_step(model, objective, data, [next(batches)], torch.Generator().manual_seed(0), optimizer)
        if rank == 0:
            torch.save({"losses": losses, "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
                        "objective": objective.state_dict()}, f"{folder}/{name}-world{size}.pt")
    if size > 1:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """The first process's state after a step on two processes at batch 4 and on one at batch 8."""
    folder = tmp_path_factory.mktemp("steps")
    mp.spawn(_one_step, args=(2, 4, str(folder)), nprocs=2)
    _one_step(0, 1, 8, str(folder))
    return folder


def test_two_processes_step_as_one_process_at_the_global_batch(steps):
    two, one = torch.load(steps / "plain-world2.pt"), torch.load(steps / "plain-world1.pt")
    assert float(two["losses"]["itc_loss"]) == pytest.approx(float(one["losses"]["itc_loss"]), rel=1e-6)
    before = _setup()[0].model.state_dict()
    moved = [k for k in before if not torch.equal(before[k], one["weights"][k])]
    assert len(moved) > 10  # the step trained the towers, so the comparison below means something
    for name in moved:
        torch.testing.assert_close(two["weights"][name], one["weights"][name], rtol=1e-5, atol=1e-6, msg=name)


def test_distilling_processes_queue_the_global_batch(steps):
    queue = torch.load(steps / "distilled-world2.pt")["objective"]["queue"]
    single = torch.load(steps / "distilled-world1.pt")["objective"]["queue"]
    assert queue["txt_idx"].tolist() == single["txt_idx"].tolist()  # both processes' pairs, in rank order
    assert queue["txt_idx"][8:].tolist() == [-1, -1] and int(queue["ptr"]) == 8
    # the momentum features that joined the queue are those of the global batch
    torch.testing.assert_close(queue["image"][:8], single["image"][:8], rtol=1e-5, atol=1e-6)


QUESTIONS = ["what colour is it", "how many", "is it big", "what shape is the thing on the left", "where", "why"]


def _evaluate(rank: int, size: int, folder: str) -> None:
    """On process ``rank`` of ``size``: retrieval metrics, VQA answers ranked from a list and generated; each
    process saves what it returned, how many ITM pairs it scored and which questions it answered itself."""
    from suites.engine.distributed import gather_lists
    from suites.tasks import retrieval, vqa

    torch.set_num_threads(1)
    if size > 1:
        dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=size)
    scored = []
    score_pairs = retrieval._itm_scores

    def counted(model, embeds, ids, mask, img_idx, *rest):
        scored.append(len(img_idx))
        return score_pairs(model, embeds, ids, mask, img_idx, *rest)

    retrieval._itm_scores = counted
    backbone, data, _ = _setup()
    metrics = retrieval.evaluate(backbone.model, backbone, data, k_test=3, itc_weight=0.0)  # ranks from ITM alone

    answered = []
    encode = vqa.encode_questions

    def recorded(model, backbone, visual, questions):
        answered.extend(questions)
        return encode(model, backbone, visual, questions)

    vqa.encode_questions = recorded
    torch.manual_seed(0)
    tiny = build_backbone("test-tiny", task="vqa")
    images = np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    questions = vqa.VQAData(images, QUESTIONS, np.arange(6) % 3, [], [["a"]] * 6, list(range(6)))
    listed = dataclasses.replace(questions, answer_list=["red", "two", "yes", "a circle"])
    ranked = vqa.predict(tiny.model, tiny, listed, k_test=2, batch_size=2)
    generated = vqa.predict(tiny.model, tiny, questions, max_len=4, batch_size=2)
    torch.save({"metrics": metrics, "scored": sum(scored), "ranked": ranked, "generated": generated,
                "answered": answered, "ranks": gather_lists([rank])}, f"{folder}/eval-rank{rank}-world{size}.pt")
    if size > 1:
        dist.destroy_process_group()


def test_two_processes_evaluate_as_one_each_scoring_a_share(tmp_path):
    mp.spawn(_evaluate, args=(2, str(tmp_path)), nprocs=2)
    _evaluate(0, 1, str(tmp_path))
    one = torch.load(tmp_path / "eval-rank0-world1.pt")
    shares = [torch.load(tmp_path / f"eval-rank{r}-world2.pt") for r in range(2)]
    assert one["metrics"]["itm_r_mean"] > 0 and len(one["ranked"]) == len(one["generated"]) == 6
    for share in shares:
        assert share["metrics"] == pytest.approx(one["metrics"], abs=1e-9)
        assert share["ranked"] == one["ranked"] and share["generated"] == one["generated"]
        assert share["ranks"] == [0, 1]  # gathered in rank order
    assert sorted(s["scored"] for s in shares) == [one["scored"] // 2, (one["scored"] + 1) // 2]
    # each process answered its half of the questions, once ranked and once generated
    assert [s["answered"] for s in shares] == [QUESTIONS[:3] * 2, QUESTIONS[3:] * 2]


@pytest.mark.parametrize("n", range(8))
def test_parts_cover_the_work_once_in_order(monkeypatch, n):
    from suites.engine import distributed

    for size in (1, 2, 3):
        parts = []
        for rank in range(size):
            monkeypatch.setattr(distributed, "world", lambda rank=rank, size=size: (rank, size))
            parts.append(np.arange(n)[distributed.part(n)])
        assert np.array_equal(np.concatenate(parts), np.arange(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shard_keeps_the_global_order():
    from suites.engine.distributed import shard

    batch = np.arange(12)
    assert np.array_equal(np.concatenate([shard(batch, r, 3) for r in range(3)]), batch)
    assert shard(batch, 0, 1) is batch


def test_suite_trial_on_two_ray_train_workers(tmp_path):
    """Ray Tune runs the trial on two Ray Train processes (gloo); its first step's ITC loss is the one-process
    trial's at the same global batch, and the trial logs once, with one weights file."""
    from suites.orchestration.runner import run_suite
    from suites.orchestration.trial import TrialSpec, run_trial

    def spec(batch_size: int, output: str) -> TrialSpec:
        return TrialSpec(method="lora", benchmark="test-tiny", method_options={"r": 2}, output_dir=output,
                         train={"steps": 2, "batch_size": batch_size, "eval_every": 1, "warmup": 1, "num_workers": 0},
                         benchmark_options={"loss": {"itm_weight": 0.0}})

    # two processes of half a CPU each: the trial's own driver needs a sliver of the machine's two cores
    records, failures = run_suite([spec(4, "")], "two-processes", output_dir=tmp_path / "two",
                                  processes_per_trial=2, cpus_per_trial=0.5)
    assert failures == [] and len(records) == 1
    two, one = records[0], run_trial(spec(8, str(tmp_path / "one")))
    assert two.processes == 2 and one.processes == 1
    assert two.history[0]["itc_loss"] == pytest.approx(one.history[0]["itc_loss"], rel=1e-5)
    weights = list((tmp_path / "two" / "trials").rglob("trained.safetensors"))
    assert len(weights) == 1 and two.weights == str(weights[0])  # written once, by the first process
