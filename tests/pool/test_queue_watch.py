"""The adaptive queue bound (``QueueWatch``): a burst is absorbed, a standing queue is shed."""

from __future__ import annotations

from claude_pool.core.config import AdmissionConfig
from claude_pool.pool._admission import QueueWatch

CONFIG = AdmissionConfig(max_queue_seconds=20, target_queue_seconds=0.1, standing_after_seconds=5)


def test_a_young_queue_is_absorbed_up_to_the_maximum() -> None:
    watch = QueueWatch(CONFIG)
    assert watch.bound(0.0) == 20
    watch.queued(0.0)
    assert watch.bound(4.9) == 20


def test_a_queue_that_stood_for_the_interval_is_shed_to_the_target_until_it_empties() -> None:
    watch = QueueWatch(CONFIG)
    watch.queued(0.0)
    for t in (5.0, 6.0, 30.0):  # more queued or refused requests do not restart the clock
        watch.queued(t)
        assert watch.bound(t) == 0.1
    watch.admitted_at_once(31.0)
    assert watch.bound(31.0) == 20


def test_a_queue_that_stands_again_soon_after_is_tight_at_once() -> None:
    watch = QueueWatch(CONFIG)
    watch.queued(0.0)
    watch.admitted_at_once(10.0)  # one lucky request found capacity while the overload went on
    watch.queued(10.5)
    assert watch.bound(10.5) == 0.1


def test_a_queue_that_stands_again_long_after_is_a_new_burst() -> None:
    watch = QueueWatch(CONFIG)
    watch.queued(0.0)
    watch.admitted_at_once(10.0)
    watch.queued(16.0)
    assert watch.bound(16.0) == 20


def test_requests_served_at_once_never_tighten_the_bound() -> None:
    watch = QueueWatch(CONFIG)
    for t in range(100):
        watch.admitted_at_once(float(t))
    assert watch.bound(100.0) == 20
