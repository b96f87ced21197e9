"""A suite reuses Ray workers across trials: what ran earlier in a process must change nothing a trial records."""

import threading
from pathlib import Path

import numpy as np
import pytest

from suites.orchestration.trial import TrialSpec, peak_rss_mb, release_free_memory, reset_peak_rss, run_trial

TINY = dict(benchmark="test-tiny", train={"steps": 3, "batch_size": 8, "warmup": 1, "eval_every": 2})


def _measured(record) -> tuple:
    return record.metrics, record.history, record.val_score, record.params


def test_a_trial_records_the_same_after_other_trials_in_its_process(tmp_path):
    aurora = TrialSpec(method="aurora", seed=1, method_options={"rank": 4}, output_dir=str(tmp_path), **TINY)
    first = run_trial(aurora)
    run_trial(TrialSpec(method="lora", seed=0, method_options={"r": 2}, output_dir=str(tmp_path), **TINY))
    run_trial(TrialSpec(method="full_finetune", seed=2, output_dir=str(tmp_path), **TINY))
    again = run_trial(aurora)
    assert _measured(again) == _measured(first)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="resets the peak through Linux's procfs")
def test_peak_memory_counts_from_the_trials_start():
    reset_peak_rss()
    before = peak_rss_mb()  # what the process holds now
    block = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
    assert peak_rss_mb() > before + 350
    del block
    reset_peak_rss()
    assert peak_rss_mb() < before + 100


def _resident_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from Linux's procfs")
def test_memory_an_earlier_trials_thread_freed_goes_back_to_the_system():
    kept = []

    def earlier_trial():  # Ray runs each trial of a reused worker on a thread of its own
        blocks = [bytearray(100_000) for _ in range(3000)]  # 300 MB, written, in this thread's malloc arena
        kept.extend(blocks[::100])  # what outlives the trial pins the arena's pages in between

    thread = threading.Thread(target=earlier_trial)
    thread.start()
    thread.join()
    held = _resident_mb()
    release_free_memory()
    assert _resident_mb() < held - 200
