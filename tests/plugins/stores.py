"""Where a test's state lives: a migrated database, and the backend of the capacity and breaker stores.

def test_x(db): ...              # a migrated database of each kind (SQLite, then PostgreSQL)
def test_y(sqlite_db): ...       # a migrated SQLite database only
def test_z(store_backend): ...   # runs twice: embedded stores (SQLite files), then Redis
    Settings(..., **store_backend.settings)          # in this process
    subprocess.Popen(..., env={..., **store_backend.env})  # in a child that reads the environment
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from claude_pool.storage import Database

__all__ = ["StoreBackend", "db", "migrated_database", "sqlite_db", "store_backend"]


@contextmanager
def migrated_database(url: str) -> Iterator[Database]:
    """The database at ``url`` upgraded to the head revision, its engine disposed of afterwards."""
    database = Database(url)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    with migrated_database(database_url) as database:
        yield database


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    with migrated_database(sqlite_url) as database:
        yield database


@dataclass(frozen=True)
class StoreBackend:
    """The stores' backend: ``redis_url`` None is the embedded one (SQLite files under the home)."""

    name: str  # "embedded" or "redis"
    redis_url: str | None = None
    redis_prefix: str = "claude-pool"

    @property
    def settings(self) -> dict[str, Any]:
        """The ``Settings`` fields that choose it."""
        return {"redis_url": self.redis_url, "redis_prefix": self.redis_prefix}

    @property
    def env(self) -> dict[str, str]:
        """The environment variables that choose it (none: embedded is the default)."""
        if self.redis_url is None:
            return {}
        return {"REDIS_URL": self.redis_url, "CLAUDE_POOL_REDIS_PREFIX": self.redis_prefix}


@pytest.fixture(params=["embedded", "redis"])
def store_backend(request: pytest.FixtureRequest) -> StoreBackend:
    """Each backend in turn (or the one an indirect ``parametrize`` names); Redis under this test's
    own key prefix, skipped when Redis is missing."""
    if request.param == "embedded":
        return StoreBackend("embedded")
    return StoreBackend(
        "redis", request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    )
