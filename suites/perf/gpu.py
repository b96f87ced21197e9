"""GPU training benchmark (``nox -s bench -- gpu``): what each method costs on BLIP-base at 384 px, batch 32, bf16.

For each method (frozen, full_finetune, lora, aurora with their default options), on a GPU each in a fresh process
(``--isolation``), on the BLIP-base architecture with random weights (``blip-base``):

- training throughput: image-caption pairs per second over the engine's own ``train_step`` on the retrieval
  benchmark's objective (``suites.perf.step.RetrievalTraining``: ITC + ITM with the method's task hooks, AdamW), on
  batches already on the device, warm-up steps excluded, ``torch.cuda.synchronize()`` around the clock. Frozen
  trains nothing, so it only evaluates.
- FLOPs and MFU: the FLOPs of one training step (forward + backward) counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (the matrix products, convolutions and attention the step executes;
  the optimizer's elementwise work is not counted); achieved FLOP/s = FLOPs per step / seconds per step; MFU = that
  over the GPU's dense bf16 peak (``PEAK_BF16_DENSE_FLOPS`` by device name, or ``--peak-tflops``).
- GPU busy share: seconds of a step on batches already on the device over seconds of a step fed by the engine's
  loader (``suites.engine.data.load_batches`` with ``--workers`` processes, from in-memory uint8 images: captions
  tokenized and pixels made by ``Backbone.pixels`` in the workers, pinned, copied in the step), both after warm-up.
- peak memory: ``torch.cuda.max_memory_allocated``, reset once the model is on the device: over training
  (optimizer state included), then again over evaluation.
- evaluation time: ``suites.tasks.retrieval.evaluate`` (ITC, then ITM re-ranking of each query's top ``k_test``)
  on a synthetic split, with the method's deltas merged (``aurora.api.merged``) and under autocast, as a trial
  evaluates; after a warm-up evaluation of a few images, so first-call kernel set-up is not counted.

``--attention eager`` measures the same with transformers' eager BLIP attention in place of the suite's fused one
(``suites.backbones.attention``): run both to see what fusing saves in time and memory.

The targets (Aurora/LoRA throughput >= 0.9, Aurora/full throughput >= 1.5, Aurora/full peak training memory <= 0.6,
full fine-tuning MFU >= 0.40, busy share >= 0.9 for every trained method) are reported with pass/fail flags.

``--tiny`` runs the same code on the CPU with the ``test-tiny`` backbone, batch 4 and a couple of steps, all methods
in this process (a fresh one costs ~10 s of imports); memory is then null (one process's peak RSS cannot be split
between methods; with ``--isolation process`` it is each process's peak RSS) and MFU null ("no GPU"). It checks the
script, not the targets.

A benchmark, not a test: it asserts nothing, prints a table and writes JSON (``--output``).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import os
import resource
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from suites.backbones.attention import use_sdpa
from suites.perf.step import RetrievalTraining, random_retrieval_data, retrieval_training, spawn

METHODS = ("frozen", "full_finetune", "lora", "aurora")

# Dense (no 2:4 sparsity) bf16 tensor-core peak FLOP/s by ``torch.cuda.get_device_name()``; the first entry the
# name contains wins, so variants come before their family. None: a variant whose peak is not tabled here.
PEAK_BF16_DENSE_FLOPS: tuple[tuple[str, float | None], ...] = (
    # https://www.nvidia.com/en-us/data-center/h100/ (sparse figures, halved): NVL 1,671, PCIe 1,513, SXM 1,979
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200 NVL", None),  # lower power than the SXM part: pass --peak-tflops
    # https://www.nvidia.com/en-us/data-center/h200/ (SXM: 1,979 with sparsity, the H100's GH100 die)
    ("H200", 989e12),
    # https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
    ("A100", 312e12),
    # NVIDIA's L40S datasheet, 362.05 dense, 733 with sparsity (its table as reproduced at
    # https://www.mullet.se/product.html?product_id=355414)
    ("L40S", 362e12),
    # https://d1.awsstatic.com/product-marketing/ec2/NVIDIA_AWS_A10G_DataSheet_FINAL_02_17_2022.pdf (70 FP16/BF16)
    ("A10G", 70e12),
)

TARGETS = (  # name, what it compares, comparison, threshold
    ("aurora_lora_throughput", "Aurora / LoRA training throughput", ">=", 0.9),
    ("aurora_full_throughput", "Aurora / full fine-tuning training throughput", ">=", 1.5),
    ("aurora_full_peak_memory", "Aurora / full fine-tuning peak training memory", "<=", 0.6),
    ("full_finetune_mfu", "full fine-tuning model FLOPs utilisation", ">=", 0.40),
    ("busy_share", "GPU busy share of a loader-fed step, lowest over the trained methods", ">=", 0.9),
)

FLOP_COUNTING = ("torch.utils.flop_counter.FlopCounterMode over one training step (forward + backward): the matrix "
                 "products, convolutions and attention it executes; the optimizer's elementwise work is not counted")


@dataclass(frozen=True)
class BenchConfig:
    backbone: str
    batch: int
    precision: str  # autocast: bf16 | fp32 | fp16
    device: str
    warmup: int  # steps before any clock starts
    steps: int  # timed steps on batches already on the device
    fed_steps: int  # timed steps fed by the loader
    workers: int  # loader processes
    train_images: int  # the in-memory images the loader draws batches from
    eval_images: int
    captions_per_image: int
    k_test: int
    isolation: str  # process: each method in a fresh process; shared: one after another in this one
    threads: int | None  # torch's CPU threads (None: torch's default)
    attention: str  # fused: the suite's (scaled_dot_product_attention); eager: transformers' BLIP layers


GPU_DEFAULTS = dict(backbone="blip-base", batch=32, precision="bf16", device="cuda", warmup=5, steps=20, fed_steps=30,
                    train_images=128, eval_images=256, captions_per_image=5, k_test=16, isolation="process",
                    threads=None, attention="fused")
# threads=1: a tiny model gains nothing from more threads, and on a busy machine they wait
TINY_DEFAULTS = dict(backbone="test-tiny", batch=4, precision="bf16", device="cpu", warmup=1, steps=2, fed_steps=2,
                     train_images=8, eval_images=8, captions_per_image=2, k_test=4, isolation="shared",
                     threads=1, attention="fused")


def default_workers() -> int:
    """What a trial holding every CPU of this machine loads with: its CPUs but one."""
    return max(1, (os.cpu_count() or 2) - 1)


# -- timing ---------------------------------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(training: RetrievalTraining, batches: Iterator[dict], n: int) -> None:
    for _ in range(n):
        training.step(next(batches))


def timed_steps(training: RetrievalTraining, batches: Iterator[dict], n: int) -> float:
    """Seconds per step over ``n`` steps, the device idle at both ends of the clock."""
    synchronize(training.device)
    start = time.perf_counter()
    run_steps(training, batches, n)
    synchronize(training.device)
    return (time.perf_counter() - start) / n


def count_step_flops(training: RetrievalTraining, batch: dict) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        training.step(batch)
    return counter.get_total_flops()


def fed_step_seconds(training: RetrievalTraining, cfg: BenchConfig) -> float:
    """Seconds per step when the engine's loader feeds the steps, as in a trial."""
    import numpy as np

    from suites.engine.data import load_batches

    # every worker's first batch arrives at about the same time: let that burst pass before the clock starts
    warm = cfg.warmup + cfg.workers
    batches = load_batches(training.objective, training.data, cfg.batch, warm + cfg.fed_steps,
                           np.random.default_rng(1), seed=1, num_workers=cfg.workers,
                           pin_memory=training.device.type == "cuda")
    run_steps(training, batches, warm)
    seconds = timed_steps(training, batches, cfg.fed_steps)
    del batches  # stops the workers
    return seconds


def measure_training(training: RetrievalTraining, cfg: BenchConfig) -> dict:
    resident = itertools.cycle([training.on_device(training.load()) for _ in range(2)])
    run_steps(training, resident, cfg.warmup)
    flops = count_step_flops(training, next(resident))
    step_s = timed_steps(training, resident, cfg.steps)
    fed_s = fed_step_seconds(training, cfg)
    return {"step_time_s": step_s, "pairs_per_s": cfg.batch / step_s, "flops_per_step": flops,
            "achieved_tflops": flops / step_s / 1e12,
            "loading": {"workers": cfg.workers, "device_step_time_s": step_s, "fed_step_time_s": fed_s,
                        "busy_share": step_s / fed_s}}


def measure_evaluation(training: RetrievalTraining, cfg: BenchConfig) -> dict:
    from aurora.api import merged
    from suites.tasks.retrieval import evaluate

    size = training.backbone.image_size
    split = random_retrieval_data(cfg.eval_images, size, cfg.captions_per_image, seed=2)
    warm_split = random_retrieval_data(min(cfg.eval_images, cfg.k_test), size, cfg.captions_per_image, seed=3)

    def run(data) -> None:
        with merged(training.method, training.model), training.precision.autocast():
            evaluate(training.model, training.backbone, data, k_test=cfg.k_test)

    run(warm_split)
    synchronize(training.device)
    start = time.perf_counter()
    run(split)
    synchronize(training.device)
    return {"seconds": time.perf_counter() - start, "images": cfg.eval_images,
            "captions": cfg.eval_images * cfg.captions_per_image, "k_test": cfg.k_test}


# -- memory ---------------------------------------------------------------------------------------------------------

def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device, own_process: bool) -> float | None:
    """The device's peak allocation since the last reset; on the CPU the process's peak RSS, where the process is
    the method's own (RSS has no reset, and one process's peak cannot be split between methods)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if own_process else None


def memory_source(device: torch.device, own_process: bool) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated"
    if own_process:
        return "peak RSS of the method's own process (ru_maxrss), which has no reset: eval includes training"
    return "not measured: the methods share this process, whose peak RSS cannot be split between them"


# -- one method -----------------------------------------------------------------------------------------------------

def free_training_state(training: RetrievalTraining) -> None:
    """Optimizer state and gradients dropped, as when a trial's training ends: the evaluation's peak is its own."""
    training.optimizer = None
    training.model.zero_grad(set_to_none=True)
    gc.collect()


def measure_method(method: str, cfg: BenchConfig, own_process: bool) -> dict:
    """Build ``method``, train it (unless it trains nothing) and evaluate it -> its row of the report."""
    from aurora.api import param_report

    device = torch.device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    training = retrieval_training(method, cfg.backbone, cfg.batch, cfg.device, cfg.precision,
                                  n_images=cfg.train_images)
    use_sdpa(training.model, fused=cfg.attention == "fused")
    row = {"method": method, "options": training.method.config.to_dict(), "image_size": training.backbone.image_size,
           "method_trainable_params": param_report(training.model).method_trainable}
    reset_peak_memory(device)
    row["train"] = measure_training(training, cfg) if training.optimizer is not None else None
    train_peak = peak_memory_mb(device, own_process) if row["train"] is not None else None
    free_training_state(training)
    reset_peak_memory(device)
    row["eval"] = measure_evaluation(training, cfg)
    row["peak_memory_mb"] = {"train": train_peak, "eval": peak_memory_mb(device, own_process),
                             "source": memory_source(device, own_process)}
    return row


def _method_worker(method: str, cfg: BenchConfig, conn) -> None:
    try:
        conn.send(measure_method(method, cfg, own_process=True))
    except Exception as err:  # reported in the method's row; the other methods still run
        traceback.print_exc()
        conn.send({"method": method, "error": f"{type(err).__name__}: {err}"})


def in_fresh_process(method: str, cfg: BenchConfig) -> dict:
    proc, conn = spawn(_method_worker, (method, cfg))
    try:
        row = conn.recv()
    except EOFError:
        row = {"method": method, "error": "the method's process died without a result"}
    proc.join()
    if proc.exitcode:
        row.setdefault("error", f"the method's process exited with code {proc.exitcode}")
    return row


def in_this_process(method: str, cfg: BenchConfig) -> dict:
    try:
        return measure_method(method, cfg, own_process=False)
    except Exception as err:  # reported in the method's row; the other methods still run
        traceback.print_exc()
        return {"method": method, "error": f"{type(err).__name__}: {err}"}
    finally:  # the next method starts from an empty device
        gc.collect()
        if cfg.device.startswith("cuda"):
            torch.cuda.empty_cache()


# -- peak FLOP/s, MFU and the targets -------------------------------------------------------------------------------

def peak_flops(device: torch.device, precision: str, peak_tflops: float | None) -> tuple[float | None, str]:
    """-> (the device's dense peak FLOP/s for this precision, where it came from or why there is none)."""
    if device.type != "cuda":
        return None, "no GPU"
    if peak_tflops is not None:
        return peak_tflops * 1e12, "--peak-tflops"
    if precision != "bf16":
        return None, f"the peak table is for bf16 and this run computed in {precision}: pass --peak-tflops"
    name = torch.cuda.get_device_name(device)
    for part, flops in PEAK_BF16_DENSE_FLOPS:
        if part in name:
            return (flops, f"table: {part}") if flops else (None, f"no bf16 peak tabled for {name}: pass --peak-tflops")
    return None, f"no bf16 peak tabled for {name}: pass --peak-tflops"


def add_mfu(rows: list[dict], peak: float | None, peak_note: str) -> None:
    for row in rows:
        train = row.get("train")
        if train:
            train["mfu"] = train["achieved_tflops"] * 1e12 / peak if peak else None
            train["mfu_note"] = None if peak else peak_note


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def target_values(rows: list[dict]) -> dict[str, tuple[float | None, str | None]]:
    """-> {target name: (value or None, a note: why it is missing, or which method it was measured on)}."""
    by = {r["method"]: r for r in rows if "error" not in r}
    train = {m: r["train"] for m, r in by.items() if r["train"]}
    memory = {m: r["peak_memory_mb"]["train"] for m, r in by.items()}

    def lacking(present: dict, *methods: str) -> str | None:
        missing = [m for m in methods if m not in present]
        return f"no {' or '.join(missing)} result" if missing else None

    def throughput_ratio(other: str) -> tuple[float | None, str | None]:
        if missing := lacking(train, "aurora", other):
            return None, missing
        return train["aurora"]["pairs_per_s"] / train[other]["pairs_per_s"], None

    def memory_ratio() -> tuple[float | None, str | None]:
        if missing := lacking(memory, "aurora", "full_finetune"):
            return None, missing
        value = _ratio(memory["aurora"], memory["full_finetune"])
        return value, None if value is not None else "peak memory not measured in this run"

    def mfu() -> tuple[float | None, str | None]:
        if missing := lacking(train, "full_finetune"):
            return None, missing
        return train["full_finetune"]["mfu"], train["full_finetune"]["mfu_note"]

    def busy_share() -> tuple[float | None, str | None]:
        if not train:
            return None, "no method trained"
        lowest = min(train, key=lambda m: train[m]["loading"]["busy_share"])
        return train[lowest]["loading"]["busy_share"], f"lowest: {lowest}"

    return {"aurora_lora_throughput": throughput_ratio("lora"), "aurora_full_throughput": throughput_ratio("full_finetune"),
            "aurora_full_peak_memory": memory_ratio(), "full_finetune_mfu": mfu(), "busy_share": busy_share()}


def judge_targets(rows: list[dict]) -> dict[str, dict]:
    values = target_values(rows)
    out = {}
    for name, what, comparison, threshold in TARGETS:
        value, note = values[name]
        passed = None if value is None else (value >= threshold if comparison == ">=" else value <= threshold)
        out[name] = {"what": what, "value": value, "target": f"{comparison} {threshold}", "pass": passed,
                     "note": note}
    return out


# -- report ---------------------------------------------------------------------------------------------------------

def hardware_facts(device: torch.device) -> dict:
    from suites.orchestration.trial import hardware

    return {"gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "summary": hardware(device)}


def _fmt(value: float | None, width: int, decimals: int) -> str:
    return "-".rjust(width) if value is None else f"{value:{width}.{decimals}f}"


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def print_table(report: dict) -> None:
    print(f"{'method':14s} {'pairs/s':>9s} {'step ms':>8s} {'fed ms':>8s} {'busy':>5s} {'TFLOP/s':>8s} {'MFU':>5s} "
          f"{'train MB':>9s} {'eval MB':>8s} {'eval s':>7s}")
    for row in report["rows"]:
        if "error" in row:
            print(f"{row['method']:14s} error: {row['error']}")
            continue
        train, memory = row["train"] or {}, row["peak_memory_mb"]
        loading = train.get("loading", {})
        print(f"{row['method']:14s} {_fmt(train.get('pairs_per_s'), 9, 1)} "
              f"{_fmt(_scaled(train.get('step_time_s'), 1e3), 8, 1)} "
              f"{_fmt(_scaled(loading.get('fed_step_time_s'), 1e3), 8, 1)} {_fmt(loading.get('busy_share'), 5, 2)} "
              f"{_fmt(train.get('achieved_tflops'), 8, 3)} {_fmt(train.get('mfu'), 5, 2)} "
              f"{_fmt(memory['train'], 9, 0)} {_fmt(memory['eval'], 8, 0)} {row['eval']['seconds']:7.2f}")
    for name, target in report["targets"].items():
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[target["pass"]]
        note = f"  ({target['note']})" if target["note"] else ""
        print(f"{name:24s} {_fmt(target['value'], 6, 2)} {target['target']:>7s}  {verdict}{note}")
    if report["mode"] == "tiny":
        print("tiny mode: a check of this script on the CPU, not a measurement of the targets")


# -- command line ---------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the CPU check: test-tiny backbone, batch 4, few steps")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--backbone", help="default: blip-base (test-tiny with --tiny)")
    parser.add_argument("--batch", type=int, help="default: 32 (4 with --tiny)")
    parser.add_argument("--precision", choices=("bf16", "fp16", "fp32"), help="autocast (default: bf16)")
    parser.add_argument("--device", help="default: cuda (cpu with --tiny)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 5)")
    parser.add_argument("--steps", type=int, help="timed steps on batches already on the device (default: 20)")
    parser.add_argument("--fed-steps", type=int, help="timed steps fed by the loader (default: 30)")
    parser.add_argument("--workers", type=int, help="loader processes (default: this machine's CPUs but one)")
    parser.add_argument("--train-images", type=int, help="in-memory images the loader draws from (default: 128)")
    parser.add_argument("--eval-images", type=int, help="default: 256")
    parser.add_argument("--captions-per-image", type=int, help="default: 5")
    parser.add_argument("--k-test", type=int, help="ITM re-ranking depth (default: 16)")
    parser.add_argument("--isolation", choices=("process", "shared"),
                        help="each method in a fresh process (default on a GPU), or one after another in this one "
                             "(default with --tiny)")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's; 1 with --tiny)")
    parser.add_argument("--attention", choices=("fused", "eager"),
                        help="fused (default: what the suite runs) or transformers' eager BLIP attention, to measure "
                             "what fusing saves")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense peak TFLOP/s, where the table lacks it")
    parser.add_argument("--output", default="outputs/bench_gpu.json")
    return parser.parse_args(argv)


def bench_config(args: argparse.Namespace) -> BenchConfig:
    defaults = TINY_DEFAULTS if args.tiny else GPU_DEFAULTS
    chosen = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(BenchConfig)}
    chosen = {k: defaults[k] if v is None and k in defaults else v for k, v in chosen.items()}
    if chosen["workers"] is None:
        chosen["workers"] = default_workers()
    return BenchConfig(**chosen)


def require_gpu(cfg: BenchConfig) -> None:
    """Exit with one line where a GPU is asked for and none is visible."""
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise SystemExit(f"suites.perf.gpu: no CUDA GPU is visible (torch {torch.__version__}, {build}); "
                         "pass --tiny for the CPU check of this script")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = bench_config(args)
    require_gpu(cfg)
    device = torch.device(cfg.device)
    measure = in_fresh_process if cfg.isolation == "process" else in_this_process
    rows = [measure(method, cfg) for method in args.methods]
    peak, peak_note = peak_flops(device, cfg.precision, args.peak_tflops)
    add_mfu(rows, peak, peak_note)
    report = {"mode": "tiny" if args.tiny else "gpu", "hardware": hardware_facts(device),
              "config": dataclasses.asdict(cfg),
              "flops": {"counted_by": FLOP_COUNTING, "peak_flops": peak, "peak_source": peak_note},
              "rows": rows, "targets": judge_targets(rows)}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print_table(report)
    print(out)
    return report


if __name__ == "__main__":
    main()
