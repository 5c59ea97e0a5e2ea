"""What a task needs from the library, built once per worker process from the environment."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from claude_pool.core.errors import BackendUnavailable, StorageError
from claude_pool.core.logs import configure_logging
from claude_pool.core.settings import ENVIRONMENT_VARIABLES, Settings
from claude_pool.events import open_event_bus, open_publishing_pool
from claude_pool.http.metrics import PoolMetrics
from claude_pool.pool import Pool
from claude_pool.pool.directory import AccountDirectory
from claude_pool.quota.account_listener import AccountAlertListener
from claude_pool.runtime import Runtime
from claude_pool_tasks.prefect_events import PrefectEventBridge
from claude_pool_tasks.run_logs import forward_pool_logs_to_prefect, redact_prefect_log_sinks

__all__ = ["INFRASTRUCTURE_ERRORS", "open_pool", "retry_on_infrastructure", "runtime", "worker_metrics"]

#: Failures of our own backing services: worth a retried task. Upstream errors are not: the pool
#: already retried them on another account where that helps.
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (BackendUnavailable, StorageError, ConnectionError)


@lru_cache(maxsize=8)
def _runtime_for(_env: tuple[str | None, ...]) -> Runtime:
    rt = Runtime.from_env(Settings.from_env())
    configure_logging(rt.settings, console=False)
    forward_pool_logs_to_prefect()
    redact_prefect_log_sinks()
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
    # Every pool a worker opens stores its accounts' trouble for Slack (sent by the quota sweep).
    alerts = AccountAlertListener(rt.db)
    # ... and turns breaker transitions and set-aside accounts into Prefect events, for automations.
    bridge = PrefectEventBridge(AccountDirectory(rt.db, rt.config))
    # ... and counts what it does into the process's metrics, pushed when the task's pool closes.
    metrics = worker_metrics()
    listeners = [alerts, bridge, metrics]
    pool = open_publishing_pool(rt, bus, listeners=listeners, breaker_listeners=listeners)
    metrics.directory = pool.directory
    try:
        yield pool
    finally:
        await pool.aclose()
        if bus is not None:
            await bus.aclose()
        if rt.settings.prometheus_pushgateway_url:
            await asyncio.to_thread(metrics.push, rt.settings.prometheus_pushgateway_url)


@lru_cache(maxsize=1)
def worker_metrics() -> PoolMetrics:
    """This worker process's pool metrics: one registry, so its counters add up across task runs."""
    return PoolMetrics(stores=False)


def retry_on_infrastructure(_task: Any, _run: Any, state: Any) -> bool:
    """``retry_condition_fn``: retry only when our own database, Redis or store failed."""
    try:
        state.result()
    except INFRASTRUCTURE_ERRORS:
        return True
    except Exception:
        return False
    return False
