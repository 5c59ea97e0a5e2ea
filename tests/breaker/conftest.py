"""Both breaker stores behind one fixture, so every contract test runs against each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from claude_pool.breaker import BreakerStore, EmbeddedBreakerStore, RedisBreakerStore

StoreFactory = Callable[[], BreakerStore]
STORES = ["embedded", "redis"]


@pytest.fixture(params=STORES)
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Builds stores that share one backend, as separate workers would (own connection each)."""
    created: list[BreakerStore] = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")

        def build() -> BreakerStore:
            return RedisBreakerStore.from_url(url, prefix=prefix)
    else:
        path = tmp_path / "breakers.db"

        def build() -> BreakerStore:
            return EmbeddedBreakerStore(path)

    def make() -> BreakerStore:
        store = build()
        created.append(store)
        return store

    yield make
    for store in created:
        await store.aclose()
