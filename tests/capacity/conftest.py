"""Every capacity test runs on every backend (limits-style): ``open_store`` yields a factory that
opens the backend of the current parameter; Redis stores get the test's own key prefix."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from claude_pool.capacity import (
    BucketLimits,
    Candidate,
    CapacityStore,
    EmbeddedCapacityStore,
    RedisCapacityStore,
)

BACKENDS = ["redis", "embedded"]
T0 = 1_700_000_000.0


class FakeClock:
    """Time that moves only when told to (tests of refill and expiry without sleeping)."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


OpenStore = Callable[..., CapacityStore]


def make_opener(
    backend: str, request: pytest.FixtureRequest, path: Path
) -> tuple[OpenStore, list[CapacityStore]]:
    stores: list[CapacityStore] = []
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")

    def _open(*, clock: Callable[[], float] | None = None, **kwargs: object) -> CapacityStore:
        store: CapacityStore
        if backend == "redis":
            store = RedisCapacityStore.from_url(url, prefix=prefix, clock=clock, **kwargs)  # type: ignore[arg-type]
        else:
            store = EmbeddedCapacityStore(path / "capacity.db", clock=clock or time.time, **kwargs)  # type: ignore[arg-type]
        stores.append(store)
        return store

    return _open, stores


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def open_store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OpenStore]:
    opener, stores = make_opener(backend, request, tmp_path)
    yield opener
    for store in stores:
        await store.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(open_store: OpenStore, clock: FakeClock) -> CapacityStore:
    return open_store(clock=clock)


def cand(
    account_id: str,
    bucket_id: str | None = None,
    *,
    rpm: int = 60,
    itpm: int = 6_000,
    otpm: int = 600,
    max_in_flight: int | None = None,
    priority: int = 100,
    weight: int = 1,
) -> Candidate:
    """Defaults refill 1 request, 100 input and 10 output tokens per second."""
    return Candidate(
        account_id, bucket_id or account_id, BucketLimits(rpm, itpm, otpm, max_in_flight), priority, weight
    )
