"""The suite's progress lines: counts, and an ETA only once a trial has finished."""

import pytest

from suites.orchestration.runner import eta_seconds, progress_line


def test_no_eta_before_any_trial_finishes():
    assert eta_seconds([], unfinished=12, at_once=2) is None
    assert progress_line(0, 2, 12, None) == "[0/12 done, 2 running, 10 queued]"


def test_eta_is_the_mean_trial_time_times_the_trials_left_over_the_concurrency():
    # two trials took 80 s and 100 s; 6 left, 2 at once: 90 s x 6 / 2
    assert eta_seconds([80.0, 100.0], unfinished=6, at_once=2) == pytest.approx(270.0)
    # one at a time: every trial left waits for the one before it
    assert eta_seconds([80.0, 100.0], unfinished=6, at_once=1) == pytest.approx(540.0)


def test_concurrency_beyond_the_trials_left_does_not_shorten_the_eta():
    # one trial left runs alone however many could run together
    assert eta_seconds([90.0], unfinished=1, at_once=4) == pytest.approx(90.0)


def test_no_eta_once_every_trial_has_ended():
    assert eta_seconds([90.0], unfinished=0, at_once=2) is None
    assert progress_line(12, 0, 12, None) == "[12/12 done, 0 running, 0 queued]"


@pytest.mark.parametrize("seconds, shown", [(45, "45 s"), (270, "4 min"), (3600 + 5 * 60, "1 h 05 min")])
def test_the_eta_reads_in_seconds_minutes_or_hours(seconds, shown):
    assert progress_line(4, 2, 12, seconds) == f"[4/12 done, 2 running, 6 queued, ETA ~{shown}]"
