"""Pick the capacity store the settings call for."""

from __future__ import annotations

from claude_pool.capacity.embedded_store import EmbeddedCapacityStore
from claude_pool.capacity.redis_store import RedisCapacityStore
from claude_pool.capacity.store import CapacityStore, ColdStart
from claude_pool.core.settings import Settings

__all__ = ["open_capacity_store"]


def open_capacity_store(settings: Settings, *, cold_start: ColdStart = "full") -> CapacityStore:
    """Redis when ``settings.redis_url`` is set (keys under ``settings.redis_prefix``), else the
    embedded SQLite file ``settings.embedded_store_path``. The caller closes it (``aclose`` or
    ``async with``). Nothing connects here: the first call does, so a server that is down surfaces
    as ``BackendUnavailable`` on that call. ``cold_start``: see ``CapacityStore``."""
    if settings.redis_url:
        return RedisCapacityStore.from_url(settings.redis_url, prefix=settings.redis_prefix, cold_start=cold_start)
    return EmbeddedCapacityStore(settings.embedded_store_path, cold_start=cold_start)
