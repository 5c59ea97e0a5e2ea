"""Reserving ahead (``acquire(max_wait=...)``), on every backend: a request that cannot be served now
is given its place in the bucket's queue and told when to send, or refused at once with the time it
could be admitted."""

from __future__ import annotations

import pytest

from claude_pool.capacity import (
    REASON_IN_FLIGHT,
    REASON_REQUESTS_EXHAUSTED,
    CapacityStore,
    Demand,
    MetricSnapshot,
    RateLimitSnapshot,
    Reservation,
    Usage,
)
from tests.capacity.conftest import FakeClock, OpenStore, cand

# 60 requests a minute: one request comes back every second; tokens never bind here.
A = cand("a", rpm=60, itpm=600_000, otpm=600_000)
ONE = Demand(10, 10)


REQUESTS_LEFT_59 = RateLimitSnapshot(requests=MetricSnapshot(limit=60, remaining=59))


async def _drain(store: CapacityStore, candidate=A, count: int = 60) -> None:
    for _ in range(count):
        assert (await store.acquire([candidate], ONE)).reservation is not None
    assert (await store.acquire([candidate], ONE)).reservation is None


async def _queued(store: CapacityStore, max_wait: float, candidates=(A,)) -> Reservation:
    selection = await store.acquire(list(candidates), ONE, max_wait=max_wait)
    assert selection.reservation is not None, selection.refusals
    return selection.reservation


async def test_a_drained_bucket_queues_requests_one_refill_apart(store: CapacityStore) -> None:
    await _drain(store)
    waits = [(await _queued(store, max_wait=30)).wait_seconds for _ in range(5)]
    assert waits == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0])


async def test_what_fits_now_is_not_queued(store: CapacityStore) -> None:
    reservation = await _queued(store, max_wait=30)
    assert reservation.wait_seconds == 0


async def test_past_the_bound_a_request_is_refused_at_once_with_when_it_would_be_admitted(
    store: CapacityStore, clock: FakeClock
) -> None:
    await _drain(store)
    for _ in range(3):
        await _queued(store, max_wait=3.5)  # sends at +1, +2, +3 s
    selection = await store.acquire([A], ONE, max_wait=3.5)
    assert selection.reservation is None
    (refusal,) = selection.refusals
    assert refusal.reason == REASON_REQUESTS_EXHAUSTED
    # Its place would be at +4 s; with 3.5 s of patience it is admitted from +0.5 s on.
    assert refusal.until == pytest.approx(clock.now + 0.5)
    clock.advance(0.5)
    assert (await _queued(store, max_wait=3.5)).wait_seconds == pytest.approx(3.5)


async def test_sends_never_exceed_what_the_bucket_allows(store: CapacityStore, clock: FakeClock) -> None:
    """The token bucket's guarantee, checked on the send times: from a full bucket of 60 at t0,
    by any time t at most 60 + (t - t0) requests have been sent."""
    t0 = clock.now
    sends: list[float] = []
    for step in range(200):
        selection = await store.acquire([A], ONE, max_wait=5)
        if selection.reservation is not None:
            sends.append(clock.now + selection.reservation.wait_seconds)
        clock.advance(0.25 if step % 3 else 0.0)
    sends.sort()
    for n, sent_at in enumerate(sends, start=1):
        assert n <= 60 + (sent_at - t0) + 1e-6, (n, sent_at - t0)
    assert len(sends) > 60  # the queue was used, not only the bucket's first minute


async def test_a_queued_request_given_back_unsent_returns_its_place(store: CapacityStore) -> None:
    await _drain(store)
    first = await _queued(store, max_wait=30)
    await _queued(store, max_wait=30)
    await store.settle(first, None, request_sent=False)
    # The next one takes the place given back: +2 s (behind the second), not +3 s.
    assert (await _queued(store, max_wait=30)).wait_seconds == pytest.approx(2.0)


async def test_a_queued_reservation_holds_its_lease_from_its_send_time(
    store: CapacityStore, clock: FakeClock
) -> None:
    """A worker that dies while queued: its lease expires ``lease_ttl`` after its send time, and
    is reclaimed as any lost call (request and input kept, output given back)."""
    await _drain(store)
    selection = await store.acquire([A], ONE, max_wait=30, lease_ttl=5)
    assert selection.reservation is not None and selection.reservation.wait_seconds == pytest.approx(1.0)
    assert selection.reservation.lease_expires_at == pytest.approx(clock.now + 6.0)
    clock.advance(5.5)
    assert await store.reclaim_expired() == 0
    clock.advance(1.0)
    assert await store.reclaim_expired() == 1


async def test_the_shortest_wait_wins_whatever_the_strategy(store: CapacityStore) -> None:
    slow = cand("slow", rpm=6, itpm=600_000, otpm=600_000)  # one request every 10 s
    await _drain(store, slow, count=6)
    await _drain(store)
    for strategy in ("priority", "round_robin", "weighted", "least_loaded"):
        selection = await store.acquire([A, slow], ONE, strategy=strategy, max_wait=30)
        assert selection.reservation is not None and selection.reservation.account_id == "a", strategy


async def test_an_account_that_can_serve_now_is_preferred_to_a_queue(store: CapacityStore) -> None:
    other = cand("b", rpm=60, itpm=600_000, otpm=600_000)
    await _drain(store)
    reservation = await _queued(store, max_wait=30, candidates=(A, other))
    assert reservation.account_id == "b" and reservation.wait_seconds == 0


async def test_nobody_is_queued_behind_an_in_flight_cap(store: CapacityStore) -> None:
    capped = cand("c", rpm=60, itpm=600_000, otpm=600_000, max_in_flight=1)
    await _queued(store, max_wait=30, candidates=(capped,))
    selection = await store.acquire([capped], ONE, max_wait=30)
    assert selection.reservation is None
    assert selection.refusals[0].reason == REASON_IN_FLIGHT


async def test_workers_on_one_store_share_one_ordered_queue(
    open_store: OpenStore, clock: FakeClock
) -> None:
    """Two workers (two store clients on one backend): each request is placed behind every one
    placed before it, whichever worker asked."""
    first, second = open_store(clock=clock), open_store(clock=clock)
    await _drain(first)
    waits = []
    for n in range(6):
        waits.append((await _queued(first if n % 2 else second, max_wait=30)).wait_seconds)
    assert waits == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])


async def test_views_show_nothing_left_while_a_queue_stands(store: CapacityStore) -> None:
    await _drain(store)
    await _queued(store, max_wait=30)
    (view,) = await store.view([A])
    assert view.requests == 0 and view.headroom == 0


# --- cold start: a bucket never seen may have been drained by another client -------------------


@pytest.fixture
def cold(open_store: OpenStore, clock: FakeClock) -> CapacityStore:
    return open_store(clock=clock, cold_start="empty")


async def test_a_cold_bucket_admits_only_what_refill_brings(cold: CapacityStore, clock: FakeClock) -> None:
    assert (await cold.acquire([A], ONE)).reservation is None  # nothing at once: it may be drained
    waits = [(await _queued(cold, max_wait=30)).wait_seconds for _ in range(3)]
    assert waits == pytest.approx([1.0, 2.0, 3.0])
    (view,) = await cold.view([A])
    assert not view.levels_known


async def test_a_cold_bucket_refills_from_first_sight_even_while_it_refuses(
    cold: CapacityStore, clock: FakeClock
) -> None:
    assert (await cold.acquire([A], ONE)).reservation is None
    clock.advance(1.0)
    assert (await cold.acquire([A], ONE)).reservation is not None


async def test_the_first_calibration_sets_the_level_from_upstream_less_what_is_held(
    cold: CapacityStore, clock: FakeClock
) -> None:
    held = await _queued(cold, max_wait=30)  # sends in 1 s, still held
    snapshot = RateLimitSnapshot(requests=MetricSnapshot(limit=60, remaining=40))
    await cold.calibrate(A.bucket_id, snapshot)
    (view,) = await cold.view([A])
    assert view.levels_known and view.requests == pytest.approx(39)  # 40 left upstream, 1 held here
    await cold.settle(held, None, request_sent=False)
    # Later calibrations only lower: a remaining above the level changes nothing.
    await cold.calibrate(A.bucket_id, RateLimitSnapshot(requests=MetricSnapshot(limit=60, remaining=60)))
    (view,) = await cold.view([A])
    assert view.requests == pytest.approx(40)


async def test_a_cold_calibration_keeps_a_margin_for_rounded_token_counts(cold: CapacityStore) -> None:
    snapshot = RateLimitSnapshot(input_tokens=MetricSnapshot(limit=600_000, remaining=50_000))
    await cold.calibrate(A.bucket_id, snapshot)
    (view,) = await cold.view([A])
    assert view.input_tokens == pytest.approx(49_000)


async def test_a_store_that_trusts_the_limits_starts_full(store: CapacityStore) -> None:
    assert (await store.acquire([A], ONE)).reservation is not None
    (view,) = await store.view([A])
    assert view.levels_known and view.requests == pytest.approx(59)


async def test_a_calibration_never_shortens_the_queue(store: CapacityStore) -> None:
    await _drain(store)
    for _ in range(3):
        await _queued(store, max_wait=30)  # send at +1, +2, +3 s: the level is -3
    # Upstream says 1 is left: it cannot have counted the 3 queued calls, and levels are never raised.
    await store.calibrate(A.bucket_id, RateLimitSnapshot(requests=MetricSnapshot(limit=60, remaining=1)))
    assert (await _queued(store, max_wait=30)).wait_seconds == pytest.approx(4.0)


async def test_a_level_ahead_of_upstream_s_count_by_a_fraction_is_lowered_to_it(
    store: CapacityStore, clock: FakeClock
) -> None:
    """A call reserved on a full bucket and arriving upstream 0.5 s later: here the bucket refilled
    meanwhile (59.5), upstream's stayed full until the call arrived (59). Its answer says 59: the
    level must come down to it, or such gains would add up until a call meets a 429."""
    assert (await store.acquire([A], ONE)).reservation is not None
    clock.advance(0.5)
    await store.calibrate(A.bucket_id, REQUESTS_LEFT_59)
    (view,) = await store.view([A])
    assert view.requests == pytest.approx(59)


async def test_a_requests_count_that_shows_another_client_s_use_lowers_the_level(store: CapacityStore) -> None:
    for _ in range(50):  # 10 left here; upstream says 8: someone else spent two
        assert (await store.acquire([A], ONE)).reservation is not None
    await store.calibrate(A.bucket_id, RateLimitSnapshot(requests=MetricSnapshot(limit=60, remaining=8)))
    (view,) = await store.view([A])
    assert view.requests == pytest.approx(8)


async def _sent(store: CapacityStore) -> Reservation:
    selection = await store.acquire([A], ONE)
    assert selection.reservation is not None
    return selection.reservation


async def test_a_failure_upstream_did_not_charge_is_given_back_by_the_next_answer(store: CapacityStore) -> None:
    """A call that failed (a 500) stays charged here, since nothing says upstream did not count it;
    the next answer's count, which shows that it did not, gives it back."""
    failed = await _sent(store)
    await store.settle(failed, None)  # sent, no usage: kept charged
    answered = await _sent(store)
    await store.settle(answered, Usage(10, 10), snapshot=REQUESTS_LEFT_59)  # upstream counted one
    (view,) = await store.view([A])
    assert view.requests == pytest.approx(59)


async def test_an_answer_does_not_raise_past_calls_that_ended_after_it_was_sent(
    store: CapacityStore, clock: FakeClock
) -> None:
    """A call that left the books after this one was sent may have reached upstream after its count
    was taken: raising to that count would spend the call's charge twice."""
    answered = await _sent(store)
    clock.advance(0.01)
    other = await _sent(store)
    await store.settle(other, Usage(10, 10))  # reached upstream, maybe after the count below
    await store.settle(answered, Usage(10, 10), snapshot=REQUESTS_LEFT_59)
    (view,) = await store.view([A])
    assert view.requests == pytest.approx(58, abs=0.02)  # 60 - 2, and 0.01 s of refill


async def test_an_answer_does_not_raise_past_a_lease_that_expired_after_it_was_sent(
    store: CapacityStore, clock: FakeClock
) -> None:
    answered = (await store.acquire([A], ONE, lease_ttl=30)).reservation
    lost = (await store.acquire([A], ONE, lease_ttl=1)).reservation  # its worker died mid-call
    assert answered is not None and lost is not None
    clock.advance(1)
    assert await store.reclaim_expired() == 1
    told = RateLimitSnapshot(requests=MetricSnapshot(limit=60, remaining=60))
    await store.settle(answered, Usage(10, 10), snapshot=told)
    (view,) = await store.view([A])
    assert view.requests == pytest.approx(59)  # 60 - 2, and 1 s of refill: not raised to 60


async def test_a_raise_keeps_what_is_still_held(store: CapacityStore) -> None:
    in_flight = await _sent(store)
    failed = await _sent(store)
    await store.settle(failed, None)
    answered = await _sent(store)
    await store.settle(answered, Usage(10, 10), snapshot=REQUESTS_LEFT_59)
    (view,) = await store.view([A])
    assert view.requests == pytest.approx(58)  # 59 told, less the call still in flight
    await store.settle(in_flight, Usage(10, 10))


async def test_a_calibration_lowers_a_level_but_keeps_the_queue_s_debt(store: CapacityStore) -> None:
    """Upstream's remaining does not count calls queued to send later: lowering a level to it must
    keep their debt, or the queue's capacity would be spent twice."""
    tokens = cand("t", rpm=6_000, itpm=600_000, otpm=600)  # 10 output tokens a second
    big = Demand(10, 100)
    sent = [(await store.acquire([tokens], big)).reservation for _ in range(6)]  # the 600 spent
    queued = [(await store.acquire([tokens], big, max_wait=60)).reservation for _ in range(2)]
    assert [q.wait_seconds for q in queued if q] == pytest.approx([10.0, 20.0])
    for reservation in sent:  # they used no output at all: the level is 400 past the queue
        assert reservation is not None
        await store.settle(reservation, Usage(10, 0))
    # another client spent the key: 100 left upstream, which must still carry the 200 queued here
    snapshot = RateLimitSnapshot(output_tokens=MetricSnapshot(limit=600, remaining=100))
    await store.calibrate(tokens.bucket_id, snapshot)
    selection = await store.acquire([tokens], big, max_wait=60)
    assert selection.reservation is not None and selection.reservation.wait_seconds == pytest.approx(20.0)
