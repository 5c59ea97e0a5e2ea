"""Both breaker stores behind one fixture, so every contract test runs against each.

Time is a fake clock shared by every store of a test (as the capacity tests do): a test moves it
with ``clock.advance`` instead of sleeping. On Redis the scripts then take it in ARGV instead of
reading the server's ``TIME``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from claude_pool.breaker import BreakerStore, EmbeddedBreakerStore, RedisBreakerStore
from tests.capacity.conftest import FakeClock

StoreFactory = Callable[[], BreakerStore]
STORES = ["embedded", "redis"]
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture(params=STORES)
async def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[StoreFactory]:
    """Builds stores that share one backend and one clock, as separate workers would (own
    connection each)."""
    created: list[BreakerStore] = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")

        def build() -> BreakerStore:
            return RedisBreakerStore.from_url(url, prefix=prefix, clock=clock)
    else:
        path = tmp_path / "breakers.db"

        def build() -> BreakerStore:
            return EmbeddedBreakerStore(path, clock=clock)

    def make() -> BreakerStore:
        store = build()
        created.append(store)
        return store

    yield make
    for store in created:
        await store.aclose()
