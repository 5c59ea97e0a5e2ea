"""What a task needs from the library, built once per worker process from the environment."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from claude_pool.core.errors import BackendUnavailable, StorageError
from claude_pool.core.logs import configure_logging
from claude_pool.core.settings import ENVIRONMENT_VARIABLES, Settings
from claude_pool.events import open_event_bus, open_publishing_pool
from claude_pool.pool import Pool
from claude_pool.runtime import Runtime

__all__ = ["INFRASTRUCTURE_ERRORS", "open_pool", "retry_on_infrastructure", "runtime"]

#: Failures of our own backing services: worth a retried task. Upstream errors are not: the pool
#: already retried them on another account where that helps.
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (BackendUnavailable, StorageError, ConnectionError)


@lru_cache(maxsize=8)
def _runtime_for(_env: tuple[str | None, ...]) -> Runtime:
    rt = Runtime.from_env(Settings.from_env())
    configure_logging(rt.settings, console=False)
    return rt


def runtime() -> Runtime:
    """The process's runtime (rebuilt only when the environment it came from changes)."""
    return _runtime_for(tuple(os.environ.get(k) for k in ENVIRONMENT_VARIABLES))


@asynccontextmanager
async def open_pool(*, events: bool = True) -> AsyncIterator[Pool]:
    """A pool for one task run: its clients live on the running event loop, so they are made here
    and closed when the task ends."""
    rt = runtime()
    bus = open_event_bus(rt.settings) if events else None
    pool = open_publishing_pool(rt, bus)
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
