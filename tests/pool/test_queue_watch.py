"""The adaptive queue bound (``QueueWatch``): a burst is absorbed, a queue that stands is shed."""

from __future__ import annotations

from claude_pool.core.config import AdmissionConfig
from claude_pool.pool._admission import QueueWatch

CONFIG = AdmissionConfig(max_queue_seconds=20, target_queue_seconds=0.1, standing_after_seconds=10)


def _feed(watch: QueueWatch, samples: list[tuple[float, float]]) -> None:
    for now, wait in samples:
        watch.observe(now, wait)


def test_a_young_queue_is_absorbed_up_to_the_maximum() -> None:
    watch = QueueWatch(CONFIG)
    _feed(watch, [(t, t * 0.5) for t in range(10)])  # growing, but for less than a window
    assert watch.bound(9.9) == 20


def test_a_queue_that_grew_for_a_whole_window_is_shed_to_the_target_until_it_empties() -> None:
    watch = QueueWatch(CONFIG)
    _feed(watch, [(t, 1 + t * 0.5) for t in range(12)])  # sustained overload: it only grows
    assert watch.bound(12.0) == 0.1
    _feed(watch, [(t, 0.1) for t in range(12, 40)])  # the queue held at the target
    assert watch.bound(40.0) == 0.1
    watch.observe(41.0, 0.0)  # someone served at once: the overload is over
    assert watch.bound(41.0) == 20


def test_a_queue_that_stands_flat_at_its_longest_is_shed_too() -> None:
    watch = QueueWatch(CONFIG)
    _feed(watch, [(t, 15.0) for t in range(12)])
    assert watch.bound(12.0) == 0.1


def test_a_draining_queue_keeps_the_generous_bound() -> None:
    """A burst, then a lull: the queue it left shrinks, and the lull's requests may join it."""
    watch = QueueWatch(CONFIG)
    _feed(watch, [(t, 2.0 * t) for t in range(6)])  # a 5 s burst builds a 10 s queue
    _feed(watch, [(t, 10.0 - (t - 5)) for t in range(6, 15)])  # then it drains
    assert watch.bound(15.0) == 20


def test_a_queue_that_drained_then_grew_again_within_a_window_did_not_stand() -> None:
    """A burst's backlog drains, and the next burst builds a queue longer than any seen in the
    window just as it is judged: its two ends alone look like a queue that stood. Shed, the second
    burst would be refused at once where the deadlines could absorb it (bench: bursts, 30 s apart)."""
    watch = QueueWatch(CONFIG)
    _feed(watch, [(t, 8.0 - t) for t in range(7)])  # the last burst's backlog, draining to 2 s
    _feed(watch, [(7, 5.0), (8, 8.0), (9, 11.0), (10, 12.0)])  # the next burst, judged at 10 s
    assert watch.bound(10.0) == 20
    _feed(watch, [(t, 12.0) for t in range(11, 21)])  # then it stands for a whole window
    assert watch.bound(20.0) == 0.1


def test_the_jitter_of_one_workers_waits_is_not_a_drain() -> None:
    """Eight workers each see every eighth arrival: the queue they see jumps by the arrivals in
    between, a fraction of a second either way, while it grows or stands."""
    watch = QueueWatch(CONFIG)
    _feed(watch, [(t, 3.0 + 0.3 * t - (0.9 if t % 2 else 0.0)) for t in range(11)])  # growing, 0.6 s dips
    assert watch.bound(10.0) == 0.1


def test_a_queue_that_stands_again_soon_after_is_tight_at_once() -> None:
    watch = QueueWatch(CONFIG)
    _feed(watch, [(t, 1 + t) for t in range(12)])
    watch.observe(20.0, 0.0)  # one lucky request while the overload went on
    watch.observe(20.5, 3.0)
    assert watch.bound(20.5) == 0.1


def test_a_queue_that_stands_again_long_after_is_a_new_burst() -> None:
    watch = QueueWatch(CONFIG)
    _feed(watch, [(t, 1 + t) for t in range(12)])
    watch.observe(20.0, 0.0)
    watch.observe(31.0, 3.0)
    assert watch.bound(31.0) == 20


def test_requests_served_at_once_never_tighten_the_bound() -> None:
    watch = QueueWatch(CONFIG)
    _feed(watch, [(float(t), 0.0) for t in range(100)])
    assert watch.bound(100.0) == 20
