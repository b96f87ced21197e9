"""A suite reuses Ray workers across trials: what ran earlier in a process must change nothing a trial records."""

from pathlib import Path

import numpy as np
import pytest

from suites.orchestration.trial import TrialSpec, peak_rss_mb, reset_peak_rss, run_trial

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
