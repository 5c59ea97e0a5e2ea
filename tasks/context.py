"""What a task needs from the library, built once per worker process from the environment."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from claude_pool.core.errors import BackendUnavailable, StorageError
from claude_pool.core.logs import configure_logging
from claude_pool.core.settings import Settings
from claude_pool.events.bus import open_event_bus
from claude_pool.events.publisher import EventPublisher
from claude_pool.pool import Pool
from claude_pool.runtime import Runtime

__all__ = ["INFRASTRUCTURE_ERRORS", "open_pool", "retry_on_infrastructure", "runtime"]

#: Failures of our own backing services: worth a retried task. Upstream errors are not: the pool
#: already retried them on another account where that helps.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (BackendUnavailable, StorageError, ConnectionError)

_ENV_KEYS = (
    "DATABASE_URL",
    "REDIS_URL",
    "ENCRYPTION_KEY",
    "ENCRYPTION_KEY_PREVIOUS",
    "ANTHROPIC_BASE_URL",
    "CLAUDE_POOL_HOME",
    "CLAUDE_POOL_CONFIG",
    "CLAUDE_POOL_REDIS_PREFIX",
    "SLACK_BOT_TOKEN",
    "SLACK_BASE_URL",
    "LOG_FILE",
    "LOG_LEVEL",
)


@lru_cache(maxsize=8)
def _runtime_for(_env: tuple[str | None, ...]) -> Runtime:
    rt = Runtime.from_env(Settings.from_env())
    configure_logging(rt.settings, console=False)
    return rt


def runtime() -> Runtime:
    """The process's runtime (rebuilt only when the environment it came from changes)."""
    return _runtime_for(tuple(os.environ.get(k) for k in _ENV_KEYS))


@asynccontextmanager
async def open_pool(*, events: bool = True) -> AsyncIterator[Pool]:
    """A pool for one task run: its clients live on the running event loop, so they are made here
    and closed when the task ends."""
    rt = runtime()
    bus = open_event_bus(rt.settings) if events else None
    listeners: list[Any] = []
    if bus is not None:
        publisher = EventPublisher(bus)
        listeners.append(publisher)
    pool = Pool.open(rt, listeners=listeners, breaker_listeners=listeners)
    if bus is not None:
        publisher.directory = pool.directory
    try:
        yield pool
    finally:
        await pool.aclose()
        if bus is not None:
            await bus.aclose()


def retry_on_infrastructure(_task: Any, _run: Any, state: Any) -> bool:
    """``retry_condition_fn``: retry only when our own database, Redis or store failed."""
    try:
        state.result()
    except INFRASTRUCTURE_ERRORS:
        return True
    except Exception:
        return False
    return False
