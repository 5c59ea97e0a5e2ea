"""Each selection strategy's choice, on every backend (DESIGN.md 4.3)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
import redis.asyncio as aioredis

from claude_pool.capacity import CapacityStore, Demand, Usage
from claude_pool.core.config import Strategy
from claude_pool.core.redis_keys import RedisKeys
from tests.capacity.conftest import FakeClock, OpenStore, cand

D = Demand(100, 10)


async def pick(store: CapacityStore, cands: list, strategy: Strategy, **kw: object) -> str | None:
    """Choose and give everything back, so that every pick sees the same levels."""
    sel = await store.acquire(cands, D, strategy=strategy, **kw)  # type: ignore[arg-type]
    if sel.reservation is None:
        return None
    await store.settle(sel.reservation, None, request_sent=False)
    return sel.reservation.account_id


async def test_least_loaded_prefers_headroom(store: CapacityStore) -> None:
    a, b = cand("a"), cand("b")
    held = await store.acquire([a], Demand(3000, 0))
    assert held.reservation
    for _ in range(10):
        assert await pick(store, [a, b], Strategy.LEAST_LOADED) == "b"
    # headroom is the smallest fraction over the three limits: b's output is the tighter one now
    assert (await store.acquire([b], Demand(0, 400))).reservation
    assert await pick(store, [a, b], Strategy.LEAST_LOADED) == "a"


async def test_least_loaded_spreads_ties_over_every_account(store: CapacityStore) -> None:
    cands = [cand(x) for x in "abcd"]
    counts = Counter([await pick(store, cands, Strategy.LEAST_LOADED) for _ in range(200)])
    assert set(counts) == set("abcd") and min(counts.values()) >= 25, counts


async def test_least_loaded_spreads_real_use(store: CapacityStore) -> None:
    cands = [cand(x, rpm=1000) for x in "abc"]
    counts: Counter[str] = Counter()
    for _ in range(30):
        sel = await store.acquire(cands, D)
        assert sel.reservation
        await store.settle(sel.reservation, Usage(100, 10))
        counts[sel.reservation.account_id] += 1
    assert counts == {"a": 10, "b": 10, "c": 10}


async def test_round_robin_cycles_and_skips_the_ineligible(store: CapacityStore, clock: FakeClock) -> None:
    cands = [cand("c"), cand("a"), cand("b")]  # order given does not matter: account-id order
    assert [await pick(store, cands, Strategy.ROUND_ROBIN) for _ in range(6)] == list("abcabc")
    await store.cool_down("b", clock.now + 10)
    assert [await pick(store, cands, Strategy.ROUND_ROBIN) for _ in range(4)] == list("acac")


async def test_weighted_proportions(store: CapacityStore) -> None:
    cands = [cand("a", weight=1), cand("b", weight=3), cand("z", weight=0)]
    counts = Counter([await pick(store, cands, Strategy.WEIGHTED) for _ in range(400)])
    assert counts["z"] == 0
    assert 0.75 - 0.08 < counts["b"] / 400 < 0.75 + 0.08, counts


async def test_priority_order_and_fail_over(store: CapacityStore, clock: FakeClock) -> None:
    cands = [
        cand("a", priority=10),
        cand("b", priority=20),
        cand("c", priority=20),
        cand("d", priority=5, rpm=1),
    ]
    assert await pick(store, cands, Strategy.PRIORITY) == "d"
    assert (await store.acquire([cands[3]], D)).reservation  # d's only request is spent
    assert await pick(store, cands, Strategy.PRIORITY) == "a"
    await store.cool_down("a", clock.now + 60)
    counts = Counter([await pick(store, cands, Strategy.PRIORITY) for _ in range(60)])
    assert set(counts) == {"b", "c"}  # ties at the next level share the load
    assert await pick(store, cands, Strategy.PRIORITY, exclude={"b"}) == "c"


async def test_sticky_keeps_then_falls_back_and_remaps(store: CapacityStore, clock: FakeClock) -> None:
    cands = [cand(x) for x in "abc"]
    first = await pick(store, cands, Strategy.STICKY, sticky_key="conv-1")
    assert first is not None
    # even when another account has more headroom, the conversation stays put
    assert (await store.acquire([c for c in cands if c.account_id == first], Demand(3000, 0))).reservation
    for _ in range(5):
        assert await pick(store, cands, Strategy.STICKY, sticky_key="conv-1") == first
    await store.cool_down(first, clock.now + 30)
    moved = await pick(store, cands, Strategy.STICKY, sticky_key="conv-1")
    assert moved not in (None, first)
    clock.advance(31)  # the first account is healthy again, but the conversation now lives on `moved`
    assert await pick(store, cands, Strategy.STICKY, sticky_key="conv-1") == moved
    other = await pick(store, cands, Strategy.STICKY, sticky_key="conv-2")
    assert other is not None
    # without a key sticky is least_loaded
    assert await pick(store, cands, Strategy.STICKY) is not None


async def test_sticky_mapping_expires(
    open_store: OpenStore, clock: FakeClock, backend: str, request: pytest.FixtureRequest
) -> None:
    store = open_store(clock=clock)
    cands = [cand("a"), cand("b")]
    first = await pick(store, cands, Strategy.STICKY, sticky_key="k", sticky_ttl=0.1)
    assert (await store.acquire([c for c in cands if c.account_id == first], Demand(3000, 0))).reservation
    clock.advance(0.2)
    if backend == "redis":  # the mapping is a key Redis expires by itself, on its own clock
        key = RedisKeys(request.getfixturevalue("redis_prefix")).sticky("k")
        await _until_gone(request.getfixturevalue("redis_url"), key)
    assert await pick(store, cands, Strategy.STICKY, sticky_key="k") != first


async def _until_gone(url: str, key: str, *, within: float = 5.0) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + within
        while await client.exists(key):
            assert time.monotonic() < deadline, f"Redis did not expire {key} within {within} s"
            await asyncio.sleep(0.01)
    finally:
        await client.aclose()


@pytest.mark.parametrize("strategy", list(Strategy))
async def test_every_strategy_honours_exclude_and_refuses_when_nothing_fits(
    store: CapacityStore, strategy: Strategy
) -> None:
    cands = [cand("a"), cand("b")]
    assert await pick(store, cands, strategy, exclude={"a"}, sticky_key="s") == "b"
    assert await pick(store, cands, strategy, exclude={"a", "b"}, sticky_key="s") is None
