"""The comparison's per-request figures: what a caller saw (served latency, time to a failure) and
what the simulator served, counted from a scenario's ``measure_from_s``."""

from __future__ import annotations

from bench.compare.figures import caller_view, measured_span, percentile, served_between
from bench.compare.measure import Sample

RECORDS = [
    (0.0, None, 0.2),  # before the window: left out
    (5.0, "NoAccountAvailable", 19.7),  # before the window: left out
    (40.0, None, 0.3),
    (41.0, None, 0.5),
    (42.0, "NoAccountAvailable", 0.01),
    (43.0, "budget exceeded", 20.0),
    (44.0, "overflow", None),  # offered, never sent: failed, but no time to a refusal
]


def test_caller_view_counts_only_requests_due_from_the_window() -> None:
    view = caller_view(RECORDS, since=40.0)

    assert view.offered == 5
    assert view.ok == 2
    assert sorted(view.served_s) == [0.3, 0.5]
    assert sorted(view.refused_s) == [0.01, 20.0]
    assert view.failures == {"NoAccountAvailable": 1, "budget exceeded": 1, "overflow": 1}


def test_caller_view_without_a_window_counts_every_request() -> None:
    view = caller_view(RECORDS)

    assert (view.offered, view.ok) == (7, 3)
    assert view.failures["NoAccountAvailable"] == 2
    assert percentile(list(view.refused_s), 50) == 19.7


def test_a_request_due_exactly_at_the_window_start_counts() -> None:
    assert caller_view([(40.0, None, 1.0)], since=40.0).ok == 1
    assert caller_view([(39.999, None, 1.0)], since=40.0).offered == 0


def test_answers_that_came_after_the_load_are_counted_apart() -> None:
    records = [
        (58.0, None, 0.5),  # answered at 58.5 s: within a 60 s load
        (59.5, None, 1.5),  # a retry answered at 61 s: after it
        (59.9, "RateLimitError", 2.0),  # failed after the load: not an answer
    ]

    view = caller_view(records, load_s=60.0)

    assert view.ok == 2
    assert view.answered_after_load == 1
    assert caller_view(records).answered_after_load == 0  # no load length given: none is after it


def test_served_between_subtracts_the_snapshot_at_the_window_start() -> None:
    samples = [
        Sample(40.0, {"a": 50, "b": 90}, {"a": 40, "b": 80}, limited=3),
        Sample(180.0, {"a": 200, "b": 400}, {"a": 180, "b": 360}, limited=3),
    ]

    assert served_between(samples, 40.0, 180.0) == {"a": 140, "b": 280}
    assert served_between(samples, 0.0, 180.0) == {"a": 180, "b": 360}  # from the start: counters reset


def test_served_between_is_unknown_without_the_window_snapshot() -> None:
    samples = [Sample(180.0, {"a": 10}, {"a": 9})]

    assert served_between(samples, 40.0, 180.0) is None  # never the whole run passed off as the window
    assert served_between([], 0.0, 180.0) is None


def test_percentile_of_nothing_is_not_a_number() -> None:
    assert percentile([], 50) != percentile([], 50)  # NaN: the table prints "-"


def test_measured_span_follows_the_simulators_clock_when_a_snapshot_is_late() -> None:
    samples = [
        Sample(40.0, {}, {}, sim_s=1040.0),
        Sample(180.0, {}, {}, sim_s=1192.0),  # taken 12 s late on a busy machine
    ]

    assert measured_span(samples, 40.0, 180.0, load_start_sim_s=1000.0) == 152.0
    assert measured_span(samples, 0.0, 180.0, load_start_sim_s=1000.0) == 192.0
    assert measured_span([Sample(180.0, {}, {})], 40.0, 180.0, 1000.0) == 140.0  # no clock: nominal


def test_a_window_without_its_end_snapshot_has_no_goodput() -> None:
    only_start = [Sample(40.0, {"a": 50}, {"a": 40}, sim_s=1040.0)]

    assert served_between(only_start, 40.0, 180.0) is None  # not "0 served"
