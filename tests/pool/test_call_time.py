"""How long before its deadline a request must be sent (``CallTime``): a request is not given a
place later than that, and one that wakes with less left gives it back unsent."""

from __future__ import annotations

import random
import statistics

import pytest

from claude_pool.pool._call_time import CallTime


def fed(samples: list[float]) -> CallTime:
    estimate = CallTime()
    for seconds in samples:
        estimate.observe(seconds)
    return estimate


def test_before_any_answer_no_request_is_held_back() -> None:
    assert CallTime().needed == 0.0


def test_calls_that_always_take_the_same_time_need_just_that() -> None:
    assert fed([0.5] * 60).needed == pytest.approx(0.5, rel=0.01)


def test_calls_that_vary_need_time_for_most_of_the_slow_ones_not_just_the_average() -> None:
    """Calls spread evenly over 0.2-1.2 s: a place that leaves the average (0.7 s) would see about
    half of the calls slower than that cut at the deadline; the estimate leaves time for nearly all."""
    rng = random.Random(7)
    samples = [rng.uniform(0.2, 1.2) for _ in range(400)]
    needed = fed(samples).needed
    recent = sorted(samples[-100:])
    assert needed >= recent[89]  # at least the 90th percentile of the recent calls
    assert needed <= max(recent) + 0.3  # and not far past the slowest
    assert needed > statistics.mean(recent) + 0.3


def test_when_calls_become_slower_the_time_needed_follows_within_a_few_calls() -> None:
    estimate = fed([0.5] * 60)
    for _ in range(6):
        estimate.observe(2.0)
    assert estimate.needed >= 2.0


def test_when_calls_become_faster_requests_may_queue_longer_again() -> None:
    estimate = fed([2.0] * 60)
    for _ in range(60):
        estimate.observe(0.5)
    assert estimate.needed == pytest.approx(0.5, abs=0.05)
