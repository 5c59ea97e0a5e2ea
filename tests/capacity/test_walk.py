"""Least-loaded among many buckets: on Redis the acquire script walks the fullness index instead of
reading every bucket (``WALK_FROM_BUCKETS``). The choice must still be the least loaded, the limits
kept and the refusals complete; the embedded store runs the same tests with its scan."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_pool.capacity import (
    BucketView,
    Candidate,
    CapacityStore,
    Demand,
    RateLimitSnapshot,
    RedisCapacityStore,
    Reservation,
    Usage,
)
from claude_pool.capacity._rules import WALK_FROM_BUCKETS
from claude_pool.capacity.model import REASON_REQUESTS_EXHAUSTED
from claude_pool.capacity.ratelimit import MetricSnapshot
from claude_pool.core.config import Strategy
from claude_pool.core.redis_keys import RedisKeys
from tests.capacity.conftest import FakeClock, cand
from tests.capacity.test_properties import _on_both_stores


# 40 accounts over 36 buckets (four organizations of two keys), every fifth with an in-flight cap
def _many(k: int) -> Candidate:
    b = k // 2 if k < 8 else k  # the two keys of an organization share its bucket and limits
    return cand(
        f"a{k:02d}",
        f"org{b}" if k < 8 else None,
        rpm=6 + 3 * (b % 7),
        itpm=600 + 200 * (b % 5),
        otpm=120 + 30 * (b % 3),
        max_in_flight=2 if b % 5 == 4 else None,
    )


MANY = [_many(k) for k in range(40)]
assert len({c.bucket_id for c in MANY}) >= WALK_FROM_BUCKETS
NAMES = [c.account_id for c in MANY]
EPS = 1e-9


def best_now(views: list[BucketView], demand: Demand, exclude: set[str]) -> float | None:
    """The least-loaded score among the candidates that could send at once, from a view taken at
    the same instant (None: none could)."""
    need = (demand.requests, demand.input_tokens, demand.output_tokens)
    best = None
    for v in views:
        mif = v.limits.max_in_flight
        levels = (v.requests, v.input_tokens, v.output_tokens)
        caps = (v.limits.rpm, v.limits.itpm, v.limits.otpm)
        if v.account_id in exclude or v.cooldown_until is not None or (mif and v.in_flight >= mif):
            continue
        if all(lv >= n for lv, n in zip(levels, need, strict=True)):
            score = min((lv - n) / cap for lv, n, cap in zip(levels, need, caps, strict=True))
            best = score if best is None else max(best, score)
    return best


def score_of(view: BucketView, demand: Demand) -> float:
    need = (demand.requests, demand.input_tokens, demand.output_tokens)
    levels = (view.requests, view.input_tokens, view.output_tokens)
    caps = (view.limits.rpm, view.limits.itpm, view.limits.otpm)
    return min((lv - n) / cap for lv, n, cap in zip(levels, need, caps, strict=True))


acquire_op = st.tuples(
    st.just("acquire"),
    st.integers(1, 300),
    st.integers(1, 80),
    st.lists(st.sampled_from(NAMES), max_size=6, unique=True),
    st.sampled_from([0.0, 0.0, 0.0, 30.0]),
)
ops_strategy = st.lists(
    st.one_of(
        acquire_op,
        acquire_op,
        st.tuples(st.just("settle"), st.integers(0, 50), st.sampled_from(["usage", "none", "unsent"])),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 2.0, 10.0])),
        st.tuples(st.just("cool"), st.sampled_from(NAMES), st.sampled_from([1.0, 20.0])),
        st.tuples(st.just("calibrate"), st.sampled_from(NAMES), st.integers(0, 600)),
        st.tuples(st.just("reclaim")),
    ),
    max_size=40,
)


async def _acquire(
    stores: list[CapacityStore], op: tuple[Any, ...], held: list[list[Reservation]]
) -> None:
    _, inp, out, exclude, max_wait = op
    demand = Demand(inp, out)
    for s in stores:
        await s.reclaim_expired()  # so that the view below is what acquire will see
    before = {v.account_id: v for v in await stores[0].view(MANY)}
    best = best_now(list(before.values()), demand, set(exclude))
    sels = [await s.acquire(MANY, demand, exclude=exclude, max_wait=max_wait, lease_ttl=5.0) for s in stores]
    assert len({(sel.reservation.account_id, sel.reservation.wait_seconds) if sel.reservation else None for sel in sels}) == 1, sels
    assert len({tuple((r.account_id, r.reason, r.until) for r in sel.refusals) for sel in sels}) == 1
    res = sels[0].reservation
    if res is None or res.wait_seconds > 0:
        assert best is None, (op, res)  # someone could have sent at once
    else:
        assert res.account_id not in exclude
        assert best is not None and score_of(before[res.account_id], demand) >= best - EPS, (op, res)
    if res is None:  # a refusal names every candidate
        assert sorted(r.account_id for r in sels[0].refusals) == sorted(NAMES)
    else:
        held.append([sel.reservation for sel in sels if sel.reservation])


async def _apply(
    stores: list[CapacityStore], op: tuple[Any, ...], clock: FakeClock, held: list[list[Reservation]]
) -> None:
    kind = op[0]
    bucket_of = {c.account_id: c.bucket_id for c in MANY}
    if kind == "acquire":
        await _acquire(stores, op, held)
    elif kind == "settle" and held:
        for s, res in zip(stores, held.pop(op[1] % len(held)), strict=True):
            usage = Usage(res.demand.input_tokens // 2, res.demand.output_tokens // 2)
            await s.settle(res, usage if op[2] == "usage" else None, request_sent=op[2] != "unsent")
    elif kind == "advance":
        clock.advance(op[1])
    for s in stores:
        if kind == "cool":
            await s.cool_down(bucket_of[op[1]], clock.now + op[2])
        elif kind == "calibrate":
            await s.calibrate(bucket_of[op[1]], RateLimitSnapshot(input_tokens=MetricSnapshot(None, op[2])))
        elif kind == "reclaim":
            await s.reclaim_expired()


def _levels(views: list[BucketView]) -> list[tuple[float, ...]]:
    return [(v.requests, v.input_tokens, v.output_tokens, v.in_flight) for v in views]


def _check_bounds(views: list[BucketView]) -> None:
    for v, c in zip(views, MANY, strict=True):
        lim = c.limits
        assert 0 <= v.requests <= lim.rpm and 0 <= v.input_tokens <= lim.itpm and 0 <= v.output_tokens <= lim.otpm


@pytest.mark.parametrize("cold_start", ["full", "empty"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy, seed=st.integers(0, 2**32))
def test_the_walks_choose_the_least_loaded_agree_keep_limits_and_leak_nothing(
    redis_url: str, cold_start: str, ops: list, seed: int
) -> None:
    """Redis's walk and the embedded store's twin, same clock and random numbers: the same choice
    every time, the least loaded of those that could send at once, every level in bounds, and every
    bucket full again once the leases of dead workers expire."""
    clock = FakeClock()

    async def run(stores: list[CapacityStore]) -> None:
        held: list[list[Reservation]] = []
        for op in ops:
            await _apply(stores, op, clock, held)
            views = [await s.view(MANY) for s in stores]
            assert _levels(views[0]) == _levels(views[1]), op
            _check_bounds(views[0])
        clock.advance(31)
        for s in stores:
            await s.reclaim_expired()
            # a cold bucket refills from its first sight: a scan sees them all (a walk, those it reads)
            await s.acquire(MANY, Demand(0, 0, requests=0), strategy=Strategy.ROUND_ROBIN)
        clock.advance(600)
        for s in stores:
            assert _levels(await s.view(MANY)) == [(c.limits.rpm, c.limits.itpm, c.limits.otpm, 0) for c in MANY]

    _on_both_stores(redis_url, clock, seed, run, cold_start=cold_start)


async def test_least_loaded_among_many_spreads_real_use(store: CapacityStore) -> None:
    cands = [cand(f"k{n:02d}", rpm=1000) for n in range(40)]
    counts: Counter[str] = Counter()
    for _ in range(200):
        sel = await store.acquire(cands, Demand(100, 10))
        assert sel.reservation
        await store.settle(sel.reservation, Usage(100, 10))
        counts[sel.reservation.account_id] += 1
    assert len(counts) == 40 and max(counts.values()) <= 10, counts


async def test_many_drained_buckets_queue_at_the_soonest_or_refuse_with_every_reason(
    store: CapacityStore, clock: FakeClock
) -> None:
    cands = [cand(f"k{n:02d}", rpm=60 + n) for n in range(40)]
    for c in cands:  # drain every request bucket; the fastest to refill is k39's
        held = await store.acquire([c], Demand(0, 0, requests=c.limits.rpm))
        assert held.reservation
    refused = await store.acquire(cands, Demand(10, 1))
    assert refused.reservation is None
    assert sorted(r.account_id for r in refused.refusals) == [c.account_id for c in cands]
    assert all(r.reason == REASON_REQUESTS_EXHAUSTED and r.until and r.until > clock.now for r in refused.refusals)
    queued = await store.acquire(cands, Demand(10, 1), max_wait=5.0)
    assert queued.reservation and queued.reservation.account_id == "k39"
    assert queued.reservation.wait_seconds == pytest.approx(60 / 99, rel=1e-6)


async def test_the_walk_rebuilds_a_lost_index_and_registration(redis_url: str, redis_prefix: str) -> None:
    clock = FakeClock()
    store = RedisCapacityStore.from_url(redis_url, prefix=redis_prefix, clock=clock)
    client = aioredis.Redis.from_url(redis_url)
    cands = [cand(f"k{n:02d}") for n in range(40)]
    try:
        for c in cands[1:]:  # all but k00 half spent
            assert (await store.acquire([c], Demand(0, 0, requests=30))).reservation
        keys = RedisKeys(redis_prefix)
        registrations = [k async for k in client.scan_iter(match=keys.candidate_list("*"))]
        await client.delete(keys.fullness(), *registrations)
        sel = await store.acquire(cands, Demand(10, 1))
        assert sel.reservation and sel.reservation.account_id == "k00"
        assert await client.zcard(keys.fullness()) == 40
    finally:
        await client.aclose()
        await store.aclose()


async def test_the_index_orders_buckets_by_how_full_they_are(redis_url: str, redis_prefix: str) -> None:
    """What keeps the walk short: the fullest bucket (by its least-full metric) first, whatever
    their limits, and the order holds while they refill."""
    clock = FakeClock()
    store = RedisCapacityStore.from_url(redis_url, prefix=redis_prefix, clock=clock)
    client = aioredis.Redis.from_url(redis_url)
    cands = [cand(f"k{n:02d}", rpm=60 + 7 * n, otpm=600 + 11 * n) for n in range(40)]
    spend = random.Random(7)
    try:
        for c in cands:
            demand = Demand(0, spend.randrange(c.limits.otpm), requests=spend.randrange(c.limits.rpm))
            assert (await store.acquire([c], demand)).reservation
        await store.cool_down("k05", clock.now + 3600)  # set aside: last, whatever its levels
        clock.advance(5)
        views = await store.view(cands)
        fullest_first = sorted(
            (v for v in views if v.account_id != "k05"),
            key=lambda v: -min(v.requests / v.limits.rpm, v.output_tokens / v.limits.otpm),
        )
        keys = RedisKeys(redis_prefix)
        indexed = [k.decode().rsplit(":", 1)[1] for k in await client.zrange(keys.fullness(), 0, -1)]
        assert indexed == [v.account_id for v in fullest_first] + ["k05"]
    finally:
        await client.aclose()
        await store.aclose()
