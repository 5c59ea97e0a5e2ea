"""Pick the breaker store the settings call for."""

from __future__ import annotations

from claude_pool.breaker.embedded_store import EmbeddedBreakerStore
from claude_pool.breaker.redis_store import RedisBreakerStore
from claude_pool.breaker.store import BreakerStore
from claude_pool.core.settings import Settings

__all__ = ["BREAKERS_DB_NAME", "open_breaker_store"]

BREAKERS_DB_NAME = "breakers.db"


def open_breaker_store(settings: Settings) -> BreakerStore:
    """Redis when ``settings.redis_url`` is set (keys under ``settings.redis_prefix``), else the
    embedded SQLite file ``<home>/breakers.db``. The caller closes it (``aclose`` or ``async with``)."""
    if settings.redis_url:
        return RedisBreakerStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
    return EmbeddedBreakerStore(settings.home / BREAKERS_DB_NAME)
