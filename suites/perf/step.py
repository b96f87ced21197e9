"""Training-step benchmark: seconds per optimizer step and peak memory per method (``nox -s bench``).

Time: one worker process per method builds its model, then the methods take turns, one optimizer step each
per round (ITC + ITM, AdamW), so a change in the machine's load hits every method alike; the reported time
is the median over the rounds after one warm-up round. Only one worker computes at a time. Each step's batch is
loaded (captions tokenized, pixels made) before its clock starts, as a trial's loader workers load ahead of the loop.

Memory: each method again in a fresh process, with glibc's mmap threshold fixed at 128 KiB
(``MALLOC_MMAP_THRESHOLD_``). Torch's CPU allocator is plain malloc; by default glibc raises that threshold
after large frees and then serves big tensors from heap arenas it rarely returns, so peak RSS measures the
allocator's caching as much as the method. With the threshold fixed every tensor over 128 KiB is mapped and
unmapped on its own, and peak RSS follows the live tensors (like ``torch.cuda.max_memory_allocated`` plus the
process's fixed footprint). That process is slower and is not timed; the timing workers' default-allocator
peak RSS is reported beside it.

A benchmark, not a test: it asserts nothing and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

    from aurora.api import Method
    from suites.backbones import Backbone
    from suites.engine.device import Precision
    from suites.tasks.retrieval import RetrievalData, RetrievalObjective

MMAP_THRESHOLD = str(128 * 1024)


@dataclass
class RetrievalTraining:
    """A method applied to a backbone, the retrieval benchmark's objective (ITC + ITM with the method's task hooks)
    over ``data``, and AdamW over what trains: what a trial's loop steps. ``optimizer`` is None for a method that
    trains nothing (zero-shot), which only evaluates."""

    method: Method
    backbone: Backbone
    objective: RetrievalObjective
    data: RetrievalData
    optimizer: torch.optim.Optimizer | None
    precision: Precision
    gen: torch.Generator  # on the model's device, as the loop's
    indices: Iterator[np.ndarray]  # endless index batches of ``data``, drawn by the objective
    total_steps: int = 300  # the training length the method's step hook is told (a trial's default)
    steps_done: int = 0

    @property
    def model(self) -> torch.nn.Module:
        return self.backbone.model

    @property
    def device(self) -> torch.device:
        return self.gen.device

    def load(self) -> dict[str, torch.Tensor]:
        """The next batch as a loader worker makes it (captions tokenized, pixels normalised), on the CPU."""
        import numpy as np

        return self.objective.load(self.data, next(self.indices), np.random.default_rng([0, self.steps_done]))

    def on_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimizer step of the engine's ``train_step`` on a loaded batch, then the method's step hook."""
        from suites.engine.loop import train_step

        losses = train_step(self.model, self.objective, self.data, [batch], self.gen, self.optimizer, self.precision,
                            self.method.task_hooks(), self.steps_done)
        self.method.on_step_end(self.model, self.steps_done, self.total_steps)
        self.steps_done += 1
        return losses


def random_retrieval_data(n_images: int, image_size: int, captions_per_image: int = 1, seed: int = 0) -> RetrievalData:
    """Random uint8 images, each with ``captions_per_image`` captions of its own, in image order."""
    import numpy as np

    from suites.tasks.retrieval import RetrievalData

    images = np.random.default_rng(seed).integers(0, 255, (n_images, image_size, image_size, 3), dtype=np.uint8)
    texts = [f"a photo of thing {i} on a table" + (f" seen from side {c}" if c else "")
             for i in range(n_images) for c in range(captions_per_image)]
    return RetrievalData(images, texts, np.repeat(np.arange(n_images), captions_per_image))


def retrieval_training(method: str, backbone: str, batch: int, device: str = "cpu", precision: str = "fp32",
                       options: dict | None = None, n_images: int | None = None, seed: int = 0) -> RetrievalTraining:
    """Build ``method`` (with ``options``) on ``backbone`` on ``device``, to train on ``n_images`` random images with
    a caption each (default one batch of them), as a trial does: the benchmark's heads train only when the method
    trains at all."""
    import numpy as np
    import torch

    from aurora.api import create_method, train_heads
    from suites.backbones import build_backbone
    from suites.benchmarks import RetrievalBenchmark
    from suites.engine.device import Precision, flush_denormals
    from suites.engine.loop import TrainConfig, make_optimizer
    from suites.tasks.retrieval import LossSettings

    flush_denormals(torch.device(device))  # as a trial computes
    torch.manual_seed(seed)  # the method's own initialisation
    bb = build_backbone(backbone)
    chosen = create_method(method, **(options or {}))
    model = chosen.apply(bb.model)
    if chosen.trains:
        train_heads(model, RetrievalBenchmark.heads(model))
    model.to(device).train()
    objective = RetrievalBenchmark(loss=LossSettings(itm_negatives="random")).objective(bb)
    data = random_retrieval_data(n_images or batch, bb.image_size, seed=seed)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trained, TrainConfig(lr=1e-5))[0] if trained else None
    return RetrievalTraining(chosen, bb, objective, data, optimizer, Precision(precision, torch.device(device)),
                             torch.Generator(device=device).manual_seed(seed),
                             objective.batches(data, batch, np.random.default_rng(seed)))


def _training_step(method: str, backbone: str, batch: int, threads: int):
    """Build ``method`` on ``backbone`` -> (step function returning its seconds, method parameter count).

    A step is the engine's own ``train_step`` on the retrieval benchmark's objective (ITC + ITM with the
    method's task hooks, AdamW), over random images and captions: the same code a trial runs. The batch is
    loaded (tokenized, pixels made) before the clock starts, as a trial's loader workers do ahead of the loop."""
    import torch

    from aurora.api import param_report

    torch.set_num_threads(threads)
    training = retrieval_training(method, backbone, batch)

    def step() -> float:
        loaded = training.load()
        start = time.perf_counter()
        training.step(loaded)
        return time.perf_counter() - start

    return step, param_report(training.model).method_trainable


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timing_worker(method: str, backbone: str, batch: int, threads: int, conn) -> None:
    """Answer every "step" message with the seconds of one optimizer step; "stop" -> final facts."""
    step, trainable = _training_step(method, backbone, batch, threads)
    conn.send("ready")
    while conn.recv() == "step":
        conn.send(step())
    conn.send({"method_trainable": trainable, "peak_rss_default_malloc_mb": _peak_rss_mb()})


def _memory_worker(method: str, backbone: str, batch: int, threads: int, conn) -> None:
    step, _ = _training_step(method, backbone, batch, threads)
    step(), step()  # the second step runs with the optimizer state the first one created
    conn.send(_peak_rss_mb())


def spawn(target, args: tuple, env: dict[str, str] | None = None):
    """Start ``target(*args, conn)`` in a fresh interpreter with extra environment variables."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})  # read by glibc when the child starts
    try:
        proc = ctx.Process(target=target, args=(*args, child))
        proc.start()
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return proc, parent


def time_interleaved(methods: list[str], backbone: str, batch: int, rounds: int, threads: int) -> dict[str, dict]:
    import numpy as np

    workers = {m: spawn(_timing_worker, (m, backbone, batch, threads)) for m in methods}
    for _, conn in workers.values():
        assert conn.recv() == "ready"
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds + 1):  # round 0 warms up allocators and caches and is not counted
        for m, (_, conn) in workers.items():
            conn.send("step")
            times[m].append(conn.recv())
    out = {}
    for m, (proc, conn) in workers.items():
        conn.send("stop")
        out[m] = {"step_time_s": float(np.median(times[m][1:])), "step_times_s": times[m][1:], **conn.recv()}
        proc.join()
    return out


def peak_memory_mb(method: str, backbone: str, batch: int, threads: int) -> float:
    proc, conn = spawn(_memory_worker, (method, backbone, batch, threads), {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD})
    peak = conn.recv()
    proc.join()
    return peak


def run(methods: list[str], backbone: str, batch: int, rounds: int, threads: int) -> list[dict]:
    timing = time_interleaved(methods, backbone, batch, rounds, threads)
    rows = []
    for method in methods:
        row = {"method": method, "backbone": backbone, "batch": batch, "rounds": rounds, "threads": threads,
               **timing[method], "peak_rss_mb": peak_memory_mb(method, backbone, batch, threads)}
        rows.append(row)
        print(f"{backbone:10s} {method:14s} step {row['step_time_s']:.3f} s  peak RSS {row['peak_rss_mb']:.0f} MB "
              f"(default malloc {row['peak_rss_default_malloc_mb']:.0f} MB)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    from suites.orchestration.trial import hardware

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--methods", nargs="+", default=["full_finetune", "lora", "aurora"])
    parser.add_argument("--backbones", nargs="+", default=["proxy", "blip-base"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per method, interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="outputs/bench.json")
    args = parser.parse_args(argv)
    rows = [r for b in args.backbones for r in run(args.methods, b, args.batch, args.rounds, args.threads)]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"hardware": hardware(), "rows": rows}, indent=1))
    for backbone in args.backbones:
        by = {r["method"]: r for r in rows if r["backbone"] == backbone}
        if {"aurora", "lora", "full_finetune"} <= set(by):
            a, lora, full = by["aurora"], by["lora"], by["full_finetune"]
            print(f"{backbone}: aurora/lora step time {a['step_time_s'] / lora['step_time_s']:.2f}x, "
                  f"aurora/full peak memory {a['peak_rss_mb'] / full['peak_rss_mb']:.2f}x "
                  f"(default malloc {a['peak_rss_default_malloc_mb'] / full['peak_rss_default_malloc_mb']:.2f}x)")
    print(out)


if __name__ == "__main__":
    main()
