"""Property tests: any interleaving (reservations made at once or ahead) keeps every level within
[0, capacity] as the views show it, never leaks capacity, and the Redis scripts and the Python engine
agree step for step (same clock, same random numbers)."""

from __future__ import annotations

import asyncio
import random
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_pool.capacity import (
    CapacityStore,
    Demand,
    EmbeddedCapacityStore,
    RateLimitSnapshot,
    RedisCapacityStore,
    Reservation,
    Usage,
)
from claude_pool.capacity.ratelimit import MetricSnapshot
from claude_pool.core.config import Strategy
from tests.capacity.conftest import FakeClock, cand

CANDS = [
    cand("a", "org", rpm=6, itpm=600, otpm=120),
    cand("b", "org", rpm=6, itpm=600, otpm=120),
    cand("c", rpm=12, itpm=300, otpm=60, max_in_flight=2),
]
PROPS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

acquire_op = st.tuples(
    st.just("acquire"),
    st.lists(st.sampled_from("abc"), min_size=1, unique=True),
    st.integers(0, 400),
    st.integers(0, 80),
    st.sampled_from(list(Strategy)),
    st.sampled_from([1.0, 5.0, 30.0]),
    st.lists(st.sampled_from("abc"), max_size=1),
    st.sampled_from([0.0, 0.0, 2.0, 30.0]),  # max_wait: at once, or reserved ahead
)
settle_op = st.tuples(
    st.just("settle"),
    st.integers(0, 50),
    st.sampled_from(["usage", "none", "unsent"]),
    st.floats(0, 1),
    st.one_of(st.none(), st.integers(0, 12)),  # the answer's requests remaining: calibrates, may raise
)
ops_strategy = st.lists(
    st.one_of(
        acquire_op,
        settle_op,
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0, 10.0])),
        st.tuples(st.just("reclaim")),
        st.tuples(st.just("cool"), st.sampled_from(["org", "c"]), st.sampled_from([1.0, 20.0])),
        st.tuples(st.just("calibrate"), st.sampled_from(["org", "c"]), st.integers(0, 600), st.booleans()),
    ),
    max_size=30,
)


async def _views(store: CapacityStore) -> list[tuple[float, ...]]:
    return [(v.requests, v.input_tokens, v.output_tokens, v.in_flight) for v in await store.view(CANDS)]


def _check_bounds(views: list[tuple[float, ...]]) -> None:
    for (r, i, o, _), c in zip(views, CANDS, strict=True):
        assert 0 <= r <= c.limits.rpm and 0 <= i <= c.limits.itpm and 0 <= o <= c.limits.otpm, views


async def _apply(
    stores: list[CapacityStore], op: tuple[Any, ...], clock: FakeClock, held: list[list[Reservation]]
) -> None:
    kind = op[0]
    if kind == "acquire":
        _, names, inp, out, strategy, lease_ttl, exclude, max_wait = op
        cands = [c for c in CANDS if c.account_id in names]
        sels = [
            await s.acquire(
                cands,
                Demand(inp, out),
                strategy=strategy,
                sticky_key="k",
                lease_ttl=lease_ttl,
                exclude=exclude,
                max_wait=max_wait,
            )
            for s in stores
        ]
        picked = [sel.reservation.account_id if sel.reservation else None for sel in sels]
        assert len(set(picked)) == 1, picked  # both backends chose the same account
        waits = {round(sel.reservation.wait_seconds, 6) for sel in sels if sel.reservation}
        assert len(waits) <= 1, waits  # and placed it at the same point of its queue
        assert len({tuple((r.account_id, r.reason) for r in sel.refusals) for sel in sels}) == 1
        if sels[0].reservation:
            held.append([sel.reservation for sel in sels if sel.reservation])
    elif kind == "settle" and held:
        _, k, mode, fraction, remaining = op
        pair = held.pop(k % len(held))
        told = None if remaining is None else RateLimitSnapshot(requests=MetricSnapshot(remaining=remaining))
        for s, res in zip(stores, pair, strict=True):
            usage = Usage(int(res.demand.input_tokens * fraction), int(res.demand.output_tokens * fraction))
            await s.settle(res, usage if mode == "usage" else None, request_sent=mode != "unsent", snapshot=told)
    elif kind == "advance":
        clock.advance(op[1])
    elif kind == "reclaim":
        assert len({await s.reclaim_expired() for s in stores}) == 1
    elif kind == "cool":
        for s in stores:
            await s.cool_down(op[1], clock.now + op[2])
    elif kind == "calibrate":
        limit = {"org": 600, "c": 300}[op[1]] if op[3] else None  # a limit: a cold store's first calibration
        snap = RateLimitSnapshot(input_tokens=MetricSnapshot(limit=limit, remaining=op[2]))
        for s in stores:
            await s.calibrate(op[1], snap)


def _on_both_stores(
    redis_url: str,
    clock: FakeClock,
    seed: int,
    run: Callable[[list[CapacityStore]], Awaitable[None]],
    *,
    cold_start: Any = "full",
) -> None:
    """``run`` on a Redis store and an embedded one that share the clock and draw the same random
    numbers, fresh for this example (a key prefix and a directory of its own: hypothesis runs many
    examples in one test); the stores are closed and the keys deleted afterwards."""
    prefix = f"claude-pool-test-{uuid.uuid4().hex[:12]}"
    rnd_a, rnd_b = random.Random(seed), random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[CapacityStore] = [
            RedisCapacityStore.from_url(
                redis_url, prefix=prefix, clock=clock, random=rnd_a.random, cold_start=cold_start
            ),
            EmbeddedCapacityStore(
                Path(tmp) / "capacity.db", clock=clock, random=rnd_b.random, cold_start=cold_start
            ),
        ]
        try:
            asyncio.run(_run_and_close(run, stores))
        finally:
            _cleanup(redis_url, prefix)


def _cleanup(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match="{" + prefix + "}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.parametrize("cold_start", ["full", "empty"])
@PROPS
@given(ops=ops_strategy, seed=st.integers(0, 2**32))
def test_interleavings_stay_in_bounds_agree_and_return_to_full(
    redis_url: str, cold_start: str, ops: list, seed: int
) -> None:
    clock = FakeClock()

    async def run(stores: list[CapacityStore]) -> None:
        held: list[list[Reservation]] = []
        for op in ops:
            await _apply(stores, op, clock, held)
            views = [await _views(s) for s in stores]
            assert views[0] == views[1], (op, views)  # bit for bit: same arithmetic, same order
            _check_bounds(views[0])
        # dead workers: their leases expire; enough refill later every bucket is full again
        clock.advance(31)
        assert len({await s.reclaim_expired() for s in stores}) == 1
        for s in stores:  # a cold bucket never used refills from its first sight
            await s.acquire(CANDS, Demand(0, 0, requests=0))
        clock.advance(600)
        for s in stores:
            assert await _views(s) == [(c.limits.rpm, c.limits.itpm, c.limits.otpm, 0) for c in CANDS]

    _on_both_stores(redis_url, clock, seed, run, cold_start=cold_start)


async def _run_and_close(
    run: Callable[[list[CapacityStore]], Awaitable[None]], stores: list[CapacityStore]
) -> None:
    try:
        await run(stores)
    finally:
        for s in stores:
            await s.aclose()


@PROPS
@given(
    demands=st.lists(
        st.tuples(st.integers(0, 100), st.integers(0, 20), st.floats(0, 1), st.booleans()),
        min_size=1,
        max_size=5,
    ),
    seed=st.integers(0, 2**32),
)
def test_frozen_time_conserves_capacity_exactly(redis_url: str, demands: list, seed: int) -> None:
    """Without refill, what is left is exactly the capacity minus what settled calls used."""
    clock = FakeClock()
    single = cand("solo", rpm=60, itpm=600, otpm=120)

    async def run(stores: list[CapacityStore]) -> None:
        for s in stores:
            held, used = [], [0, 0, 0]
            for inp, out, _fraction, _sent in demands:
                sel = await s.acquire([single], Demand(inp, out))
                if sel.reservation:
                    held.append(sel.reservation)
            for res, (inp, out, fraction, sent) in zip(held, demands, strict=False):
                usage = Usage(int(inp * fraction), int(out * fraction))
                await s.settle(res, usage if sent else None, request_sent=sent)
                if sent:
                    used = [used[0] + 1, used[1] + usage.input_tokens, used[2] + usage.output_tokens]
            (v,) = await s.view([single])
            assert (v.requests, v.input_tokens, v.output_tokens) == (
                60 - used[0],
                600 - used[1],
                120 - used[2],
            )

    _on_both_stores(redis_url, clock, seed, run)
