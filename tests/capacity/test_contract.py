"""The capacity contract: arithmetic, refill, refusals, cooldowns, calibration, leases, shared buckets."""

from __future__ import annotations

import asyncio
import pickle
import time

import pytest

from claude_pool.capacity import (
    REASON_COOLING_DOWN,
    REASON_DEMAND_EXCEEDS_LIMIT,
    REASON_EXCLUDED,
    REASON_IN_FLIGHT,
    REASON_INPUT_EXHAUSTED,
    REASON_OUTPUT_EXHAUSTED,
    REASON_REQUESTS_EXHAUSTED,
    CapacityStore,
    Demand,
    RateLimitSnapshot,
    Usage,
)
from claude_pool.capacity.ratelimit import MetricSnapshot
from claude_pool.core.errors import InvalidInput
from tests.capacity.conftest import FakeClock, OpenStore, cand

A = cand("a")


async def levels(store: CapacityStore, candidate=A) -> tuple[float, float, float]:
    (v,) = await store.view([candidate])
    return (v.requests, v.input_tokens, v.output_tokens)


async def test_reserve_then_settle_with_usage_refunds_the_difference(store: CapacityStore) -> None:
    sel = await store.acquire([A], Demand(1000, 200))
    assert sel.reservation is not None and sel.reservation.account_id == "a" and sel.refusals == []
    assert await levels(store) == (59, 5000, 400)
    await store.settle(sel.reservation, Usage(800, 50))
    assert await levels(store) == (59, 5200, 550)


@pytest.mark.parametrize(
    ("usage", "sent", "expected"),
    [
        (None, True, (59, 6000, 600)),
        (None, False, (60, 6000, 600)),
        (Usage(1000, 200), True, (59, 5000, 400)),
    ],
)
async def test_settle_modes(store: CapacityStore, usage: Usage | None, sent: bool, expected: tuple) -> None:
    sel = await store.acquire([A], Demand(1000, 200))
    assert sel.reservation
    await store.settle(sel.reservation, usage, request_sent=sent)
    assert await levels(store) == expected


async def test_settle_is_idempotent(store: CapacityStore) -> None:
    sel = await store.acquire([A], Demand(1000, 200))
    assert sel.reservation
    await store.settle(sel.reservation, Usage(500, 100))
    await store.settle(sel.reservation, Usage(0, 0))
    await store.settle(sel.reservation, None, request_sent=False)
    assert await levels(store) == (59, 5500, 500)


async def test_refund_never_exceeds_capacity(store: CapacityStore, clock: FakeClock) -> None:
    sel = await store.acquire([A], Demand(1000, 200))
    assert sel.reservation
    clock.advance(120)
    await store.settle(sel.reservation, None, request_sent=False)
    assert await levels(store) == (60, 6000, 600)


async def test_usage_above_reservation_is_charged_down_to_zero(store: CapacityStore) -> None:
    sel = await store.acquire([A], Demand(1000, 500))
    assert sel.reservation
    await store.settle(sel.reservation, Usage(3000, 9000))
    assert await levels(store) == (59, 3000, 0)


async def test_continuous_refill(store: CapacityStore, clock: FakeClock) -> None:
    sel = await store.acquire([A], Demand(3000, 300))
    assert sel.reservation
    clock.advance(10)
    assert await levels(store) == (60, 4000, 400)
    clock.advance(1000)
    assert await levels(store) == (60, 6000, 600)


async def test_refusal_reasons_and_until(store: CapacityStore, clock: FakeClock) -> None:
    assert (await store.acquire([A], Demand(5000, 500))).reservation
    sel = await store.acquire([A], Demand(2000, 0))
    assert sel.reservation is None
    (refusal,) = sel.refusals
    assert (refusal.account_id, refusal.reason) == ("a", REASON_INPUT_EXHAUSTED)
    assert refusal.until == pytest.approx(clock.now + 10)  # 1000 missing at 100/s
    sel = await store.acquire([A], Demand(0, 300))
    assert sel.refusals[0].reason == REASON_OUTPUT_EXHAUSTED
    assert sel.refusals[0].until == pytest.approx(clock.now + 20)
    # the binding metric is the one that clears last
    sel = await store.acquire([A], Demand(2000, 300))
    assert sel.refusals[0].reason == REASON_OUTPUT_EXHAUSTED
    clock.advance(20)
    assert (await store.acquire([A], Demand(2000, 300))).reservation


async def test_requests_exhausted(store: CapacityStore, clock: FakeClock) -> None:
    small = cand("s", rpm=2)
    for _ in range(2):
        assert (await store.acquire([small], Demand(1, 1))).reservation
    sel = await store.acquire([small], Demand(1, 1))
    assert sel.refusals[0].reason == REASON_REQUESTS_EXHAUSTED
    assert sel.refusals[0].until == pytest.approx(clock.now + 30)


async def test_demand_larger_than_the_bucket_can_never_fit(store: CapacityStore) -> None:
    sel = await store.acquire([A], Demand(6001, 1))
    assert sel.refusals[0].reason == REASON_DEMAND_EXCEEDS_LIMIT and sel.refusals[0].until is None
    assert sel.earliest_recovery is None


async def test_cooldown_keeps_the_later_end(store: CapacityStore, clock: FakeClock) -> None:
    await store.cool_down("a", clock.now + 30)
    await store.cool_down("a", clock.now + 5)
    sel = await store.acquire([A, cand("b")], Demand(1, 1))
    assert sel.reservation and sel.reservation.account_id == "b"
    assert [(r.account_id, r.reason) for r in sel.refusals] == [("a", REASON_COOLING_DOWN)]
    assert sel.refusals[0].until == pytest.approx(clock.now + 30)
    (view,) = await store.view([A])
    assert view.cooldown_until == pytest.approx(clock.now + 30)
    clock.advance(31)
    assert (await store.acquire([A], Demand(1, 1))).reservation
    assert (await store.view([A]))[0].cooldown_until is None


async def test_calibration_lowers_never_raises_and_adopts_limits(store: CapacityStore) -> None:
    sel = await store.acquire([A], Demand(1000, 100))
    assert sel.reservation
    snap = RateLimitSnapshot(
        requests=MetricSnapshot(limit=60, remaining=59),
        input_tokens=MetricSnapshot(limit=6000, remaining=2000),  # someone else spent some
        output_tokens=MetricSnapshot(limit=600, remaining=600),  # more than local: ignored
    )
    await store.calibrate("a", snap)
    assert await levels(store) == (59, 2000, 500)
    # the organization's tier changed: the upstream limit wins over the configured one
    await store.calibrate("a", RateLimitSnapshot(output_tokens=MetricSnapshot(limit=300)))
    (view,) = await store.view([A])
    assert view.limits.otpm == 300 and view.output_tokens == 300
    assert (await store.acquire([A], Demand(0, 301))).refusals[0].reason == REASON_DEMAND_EXCEEDS_LIMIT


async def test_settle_with_the_answers_headers_also_calibrates(store: CapacityStore) -> None:
    sel = await store.acquire([A], Demand(1000, 200))
    assert sel.reservation
    snap = RateLimitSnapshot(
        requests=MetricSnapshot(limit=60, remaining=50),  # another client spent 9 requests
        input_tokens=MetricSnapshot(limit=6000, remaining=5200),
        output_tokens=MetricSnapshot(limit=300, remaining=300),  # the organization's tier changed
    )
    await store.settle(sel.reservation, Usage(800, 50), snapshot=snap)
    # settled first (input 5000 + 200 back, output 400 + 150 back), then lowered to upstream's word
    assert await levels(store) == (50, 5200, 300)
    (view,) = await store.view([A])
    assert view.limits.otpm == 300
    await store.settle(sel.reservation, Usage(800, 50), snapshot=snap)  # idempotent still
    assert await levels(store) == (50, 5200, 300)


async def test_calibrating_an_unseen_bucket(store: CapacityStore) -> None:
    await store.calibrate("a", RateLimitSnapshot(input_tokens=MetricSnapshot(limit=6000, remaining=1000)))
    assert await levels(store) == (60, 1000, 600)
    await store.calibrate("zz", RateLimitSnapshot())  # nothing known: no error


async def test_in_flight_cap_and_lazy_reclaim_of_a_dead_worker(
    store: CapacityStore, clock: FakeClock
) -> None:
    one = cand("a", max_in_flight=1)
    first = await store.acquire([one], Demand(1000, 200), lease_ttl=5)
    assert first.reservation and first.reservation.lease_expires_at == pytest.approx(clock.now + 5)
    sel = await store.acquire([one], Demand(1, 1), lease_ttl=5)
    assert sel.refusals[0].reason == REASON_IN_FLIGHT and sel.refusals[0].until == pytest.approx(
        clock.now + 5
    )
    assert (await store.view([one]))[0].in_flight == 1
    clock.advance(5)
    # the lease expired: acquire reclaims it (request + input stay charged, output comes back)
    second = await store.acquire([one], Demand(0, 0), lease_ttl=5)
    assert second.reservation
    assert await levels(store, one) == pytest.approx((59, 5000 + 500, 600))
    await store.settle(first.reservation, Usage(0, 0))  # too late: nothing changes
    assert await levels(store, one) == pytest.approx((59, 5500, 600))


async def test_reclaim_expired(store: CapacityStore, clock: FakeClock) -> None:
    for _ in range(3):
        assert (await store.acquire([A], Demand(1000, 100), lease_ttl=5)).reservation
    kept = await store.acquire([A], Demand(1000, 100), lease_ttl=50)
    assert await store.reclaim_expired() == 0
    clock.advance(6)
    assert await store.reclaim_expired() == 3
    assert await store.reclaim_expired() == 0
    assert (await store.view([A]))[0].in_flight == 1
    # 4 requests and 4000 input stay charged; 300 output refunded; 6 s of refill on top
    assert await levels(store) == pytest.approx((60, 2000 + 600, 200 + 300 + 60))  # requests capped
    assert kept.reservation
    await store.settle(kept.reservation, Usage(1000, 100))
    assert (await store.view([A]))[0].in_flight == 0


async def test_a_renewed_lease_outlives_its_first_period_and_keeps_its_slot(
    store: CapacityStore, clock: FakeClock
) -> None:
    """A long call renews its lease: no reclaim, no second caller in its in-flight slot, and its
    own settle still refunds what it did not use."""
    one = cand("a", max_in_flight=1)
    sel = await store.acquire([one], Demand(3000, 400), lease_ttl=5)
    assert sel.reservation
    clock.advance(4)
    assert await store.renew(sel.reservation, 5) == pytest.approx(clock.now + 5)
    clock.advance(4)  # 8 s in: past the first expiry
    assert await store.reclaim_expired() == 0
    refused = await store.acquire([one], Demand(1, 1), lease_ttl=5)
    assert refused.reservation is None and refused.refusals[0].reason == REASON_IN_FLIGHT
    assert refused.refusals[0].until == pytest.approx(clock.now + 1)
    assert (await store.view([one]))[0].in_flight == 1
    await store.settle(sel.reservation, Usage(1000, 100))
    # its own usage charged (a reclaim would have kept all 3000 input): 8 s of refill on top
    assert await levels(store, one) == pytest.approx((60, 6000 - 1000 + 800, 600 - 100 + 80))
    assert (await store.view([one]))[0].in_flight == 0


async def test_a_lease_is_never_revived_nor_shortened(store: CapacityStore, clock: FakeClock) -> None:
    sel = await store.acquire([A], Demand(1000, 100), lease_ttl=10)
    assert sel.reservation
    assert await store.renew(sel.reservation, 2) == pytest.approx(clock.now + 10)  # not shortened
    clock.advance(10)
    assert await store.renew(sel.reservation, 10) is None  # expired: the slot is gone
    assert await store.reclaim_expired() == 1
    settled = await store.acquire([A], Demand(1000, 100), lease_ttl=10)
    assert settled.reservation
    await store.settle(settled.reservation, Usage(1000, 100))
    assert await store.renew(settled.reservation, 10) is None  # settled: nothing to keep


async def test_settle_after_expiry_is_the_reclaim(store: CapacityStore, clock: FakeClock) -> None:
    sel = await store.acquire([A], Demand(1000, 100), lease_ttl=1)
    assert sel.reservation
    clock.advance(1)
    await store.settle(sel.reservation, None, request_sent=False)
    assert await levels(store) == pytest.approx((60, 5100, 600))
    assert await store.reclaim_expired() == 0


async def test_shared_bucket(store: CapacityStore) -> None:
    a, b = cand("a", "org", rpm=2), cand("b", "org", rpm=2)
    picks = [await store.acquire([a, b], Demand(10, 10)) for _ in range(3)]
    assert all(p.reservation and p.reservation.bucket_id == "org" for p in picks[:2])
    assert picks[2].reservation is None
    assert {(r.account_id, r.reason) for r in picks[2].refusals} == {
        ("a", REASON_REQUESTS_EXHAUSTED),
        ("b", REASON_REQUESTS_EXHAUSTED),
    }
    views = await store.view([a, b])
    assert [v.account_id for v in views] == ["a", "b"] and views[0].requests == views[1].requests == 0


async def test_exclude(store: CapacityStore) -> None:
    sel = await store.acquire([A, cand("b")], Demand(1, 1), exclude={"a"})
    assert sel.reservation and sel.reservation.account_id == "b"
    assert [(r.account_id, r.reason, r.until) for r in sel.refusals] == [("a", REASON_EXCLUDED, None)]
    sel = await store.acquire([A], Demand(1, 1), exclude=["a"])
    assert sel.reservation is None


async def test_no_candidates_and_bad_strategy(store: CapacityStore) -> None:
    assert (await store.acquire([], Demand(1, 1))).reservation is None
    with pytest.raises(InvalidInput):
        await store.acquire([A], Demand(1, 1), strategy="fastest")


async def test_reservation_pickles(store: CapacityStore) -> None:
    sel = await store.acquire([A], Demand(1, 1))
    assert sel.reservation and pickle.loads(pickle.dumps(sel.reservation)) == sel.reservation  # noqa: S301


async def test_real_refill_and_expiry_with_server_time(open_store: OpenStore) -> None:
    store = open_store()  # the real clock: the server's on Redis
    fast = cand("f", rpm=6000, itpm=6000, otpm=6000, max_in_flight=1)  # 100 per second
    started = time.monotonic()
    sel = await store.acquire([fast], Demand(6000, 0), lease_ttl=0.2)
    assert sel.reservation
    refused = await store.acquire([fast], Demand(20, 0))
    assert {r.reason for r in refused.refusals} <= {REASON_IN_FLIGHT, REASON_INPUT_EXHAUSTED}
    # Real time must pass (the lease's 0.2 s, and 0.2 s of refill for 20 tokens): poll, bounded.
    again = await store.acquire([fast], Demand(20, 0), lease_ttl=0.2)
    while again.reservation is None:
        assert time.monotonic() - started < 5.0, again.refusals
        await asyncio.sleep(0.02)
        again = await store.acquire([fast], Demand(20, 0), lease_ttl=0.2)
    assert time.monotonic() - started >= 0.19  # neither the lease nor the refill came early
    (view,) = await store.view([fast])
    assert 0 < view.input_tokens < 100
