"""Training-step benchmark: seconds per optimizer step and peak memory per method (``nox -s bench``).

Each method runs in its own fresh process, so peak RSS (weights, activations, optimizer state) is its own.
A benchmark, not a test: it asserts nothing and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
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


def run(methods: list[str], backbone: str, batch: int, steps: int, threads: int) -> list[dict]:
    ctx = mp.get_context("spawn")  # a fresh interpreter per method: peak memory is that method's alone
    rows = []
    for method in methods:
        queue = ctx.Queue()
        proc = ctx.Process(target=_measure, args=(method, backbone, batch, steps, threads, queue))
        proc.start()
        rows.append(queue.get())
        proc.join()
        print(f"{backbone:10s} {method:14s} step {rows[-1]['step_time_s']:.3f} s  peak RSS {rows[-1]['peak_rss_mb']:.0f} MB",
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    from suites.trial import hardware

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--methods", nargs="+", default=["full_finetune", "lora", "aurora"])
    parser.add_argument("--backbones", nargs="+", default=["proxy", "blip-base"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
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
            print(f"{backbone}: aurora/lora step time {by['aurora']['step_time_s'] / by['lora']['step_time_s']:.2f}x, "
                  f"aurora/full peak memory {by['aurora']['peak_rss_mb'] / by['full_finetune']['peak_rss_mb']:.2f}x")
    print(out)


if __name__ == "__main__":
    main()
