"""Training-step benchmark: seconds per optimizer step and peak memory per method (``nox -s bench``).

Each method runs in two fresh processes, so peak RSS (weights, activations, optimizer state) is its own:
- a timing run with the default allocator: median seconds per optimizer step (the first step is warm-up);
- a memory run with glibc's mmap threshold fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_``). Torch's CPU
  allocator is plain malloc; by default glibc raises that threshold after large frees and then serves big
  tensors from heap arenas it rarely returns, so peak RSS measures the allocator's caching as much as the
  method. With the threshold fixed every tensor over 128 KiB is mapped and unmapped on its own, and peak RSS
  follows the live tensors (like ``torch.cuda.max_memory_allocated`` plus the process's fixed footprint).
  That run is slower, so it is not timed. The default-allocator peak is reported beside it.
A benchmark, not a test: it asserts nothing and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time
from pathlib import Path


def _measure(method: str, backbone: str, batch: int, steps: int, threads: int, queue) -> None:
    import numpy as np
    import torch

    from aurora.api import create_method, param_report, train_heads
    from suites.backbones import build_backbone
    from suites.benchmarks import RetrievalBenchmark
    from suites.retrieval import LossSettings, retrieval_losses

    torch.set_num_threads(threads)
    bb = build_backbone(backbone)
    model = create_method(method).apply(bb.model)
    train_heads(model, RetrievalBenchmark.heads)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    rng = np.random.default_rng(0)
    pixels = bb.pixels(rng.integers(0, 255, (batch, bb.image_size, bb.image_size, 3), dtype=np.uint8))
    tok = bb.tokenize([f"a photo of thing {i} on a table" for i in range(batch)])
    truth = torch.eye(batch, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    model.train()
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and is not timed
        start = time.perf_counter()
        loss = retrieval_losses(model, pixels, tok["input_ids"], tok["attention_mask"], truth, torch.tensor(0.07),
                                bb.enc_token_id, LossSettings(itm_negatives="random"), gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    queue.put({"method": method, "backbone": backbone, "batch": batch, "steps": steps, "threads": threads,
               "step_time_s": float(np.median(times[1:])), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "method_trainable": param_report(model).method_trainable})


MMAP_THRESHOLD = str(128 * 1024)


def _in_fresh_process(args: tuple, mmap_threshold: str | None) -> dict:
    """Run ``_measure`` in a new interpreter (spawn), optionally with glibc's mmap threshold fixed."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    saved = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    if mmap_threshold:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = mmap_threshold  # read by glibc when the child starts
    try:
        proc = ctx.Process(target=_measure, args=(*args, queue))
        proc.start()
    finally:
        if saved is None:
            os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = saved
    row = queue.get()
    proc.join()
    return row


def run(methods: list[str], backbone: str, batch: int, steps: int, threads: int) -> list[dict]:
    rows = []
    for method in methods:
        args = (method, backbone, batch, steps, threads)
        row = _in_fresh_process(args, None)
        memory = _in_fresh_process((method, backbone, batch, 1, threads), MMAP_THRESHOLD)
        row["peak_rss_default_malloc_mb"] = row.pop("peak_rss_mb")
        row["peak_rss_mb"] = memory["peak_rss_mb"]
        rows.append(row)
        print(f"{backbone:10s} {method:14s} step {row['step_time_s']:.3f} s  peak RSS {row['peak_rss_mb']:.0f} MB "
              f"(default malloc {row['peak_rss_default_malloc_mb']:.0f} MB)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    from suites.trial import hardware

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--methods", nargs="+", default=["full_finetune", "lora", "aurora"])
    parser.add_argument("--backbones", nargs="+", default=["proxy", "blip-base"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="outputs/bench.json")
    args = parser.parse_args(argv)
    rows = [r for b in args.backbones for r in run(args.methods, b, args.batch, args.steps, args.threads)]
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
