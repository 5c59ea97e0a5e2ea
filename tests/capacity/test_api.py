"""Header parsing, the factory, failures of the backend, and the public surface."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import redis.asyncio as aioredis

import claude_pool.capacity as capacity
from claude_pool.capacity import (
    CapacityStore,
    Demand,
    EmbeddedCapacityStore,
    RateLimitSnapshot,
    RedisCapacityStore,
    Usage,
    open_capacity_store,
)
from claude_pool.capacity.ratelimit import MetricSnapshot
from claude_pool.core.errors import BackendUnavailable
from claude_pool.core.settings import Settings
from tests.capacity.conftest import FakeClock, cand


def test_snapshot_from_headers_tolerates_missing_and_malformed() -> None:
    snap = RateLimitSnapshot.from_headers(
        {
            "Anthropic-RateLimit-Requests-Limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": "2024-01-01T00:00:30Z",
            "anthropic-ratelimit-input-tokens-limit": "30000",
            "anthropic-ratelimit-input-tokens-remaining": "nonsense",
            "anthropic-ratelimit-output-tokens-reset": "2024-01-01T00:00:01.500+00:00",
        }
    )
    assert (snap.requests.limit, snap.requests.remaining, snap.requests.reset) == (50, 49, 1704067230.0)
    assert (snap.input_tokens.limit, snap.input_tokens.remaining) == (30000, None)
    assert snap.output_tokens.reset == 1704067201.5 and snap.output_tokens.limit is None
    assert not snap.is_empty and RateLimitSnapshot.from_headers({}).is_empty


async def test_factory_picks_the_backend(tmp_path: Path) -> None:
    embedded = open_capacity_store(Settings(home=tmp_path))
    redis_store = open_capacity_store(Settings(home=tmp_path, redis_url="redis://127.0.0.1:1/0"))
    try:
        assert isinstance(embedded, EmbeddedCapacityStore) and isinstance(redis_store, RedisCapacityStore)
        assert (await embedded.acquire([cand("a")], Demand(1, 1))).reservation
        assert (tmp_path / "capacity.db").exists()
    finally:
        await embedded.aclose()
        await redis_store.aclose()


async def test_a_dead_backend_raises_backend_unavailable(tmp_path: Path) -> None:
    dead_redis = RedisCapacityStore.from_url("redis://127.0.0.1:1/0")
    unopenable = EmbeddedCapacityStore(tmp_path)  # a directory, not a database file
    try:
        for store in (dead_redis, unopenable):
            with pytest.raises(BackendUnavailable):
                await store.acquire([cand("a")], Demand(1, 1))
    finally:
        await dead_redis.aclose()
        await unopenable.aclose()


def test_all_is_complete() -> None:
    public = {name for name in vars(capacity) if not name.startswith("_") and name[0].isupper()}
    public -= {"annotations"}
    assert public <= set(capacity.__all__), public - set(capacity.__all__)
    assert all(hasattr(capacity, name) for name in capacity.__all__)


def test_one_lua_script_per_store_method_named_after_it() -> None:
    folder = resources.files("claude_pool.capacity") / "lua"
    scripts = {f.name.removesuffix(".lua") for f in folder.iterdir() if f.name.endswith(".lua")}
    assert scripts == {"_capacity_lib"} | (CapacityStore.__abstractmethods__ - {"aclose"})


async def test_closed_embedded_store_refuses(tmp_path: Path) -> None:
    store = EmbeddedCapacityStore(tmp_path / "capacity.db")
    assert (await store.acquire([cand("a")], Demand(1, 1))).reservation
    await store.aclose()
    await store.aclose()
    with pytest.raises(BackendUnavailable, match="closed"):
        await store.view([cand("a")])


async def test_a_redis_server_that_lost_its_scripts_still_settles_and_calibrates_in_one_go(
    redis_url: str, redis_prefix: str
) -> None:
    """A restarted Redis knows no script: the settlement's pipelined pair is loaded and run again."""
    store = RedisCapacityStore.from_url(redis_url, prefix=redis_prefix, clock=FakeClock())
    try:
        a = cand("a")
        sel = await store.acquire([a], Demand(1000, 200))
        assert sel.reservation is not None
        flusher = aioredis.Redis.from_url(redis_url)
        await flusher.script_flush()
        await flusher.aclose()
        snap = RateLimitSnapshot(requests=MetricSnapshot(limit=60, remaining=50))
        await store.settle(sel.reservation, Usage(800, 50), snapshot=snap)
        (view,) = await store.view([a])
        assert (view.requests, view.input_tokens, view.output_tokens) == (50, 5200, 550)
        assert await store.reclaim_expired() == 0  # the lease is gone: settled once
    finally:
        await store.aclose()
