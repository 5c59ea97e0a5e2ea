"""Capacity sync steps: snapshot the live view, publish it, reclaim dead workers' leases."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from prefect import task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE

from claude_pool.maintenance.capacity_sync import (
    capacity_table,
    read_usage_report,
    snapshot_pool,
    store_snapshot,
)
from claude_pool.maintenance.retention import prune_capacity_snapshots
from claude_pool.records.executions import ExecutionStore
from claude_pool_tasks.context import open_pool, retry_on_infrastructure, runtime

__all__ = [
    "prune_old_snapshots",
    "publish_capacity_table",
    "reap_stale_executions",
    "reclaim_expired_leases",
    "snapshot_capacity",
    "usage_report",
]


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
async def snapshot_capacity() -> list[dict[str, Any]]:
    """Each account's live usage and headroom, written to ``capacity_snapshots``."""
    async with open_pool(events=False) as pool:
        rows = await snapshot_pool(pool)
    await asyncio.to_thread(store_snapshot, runtime().db, rows)
    return [r.as_dict() for r in rows]


@task(cache_policy=NO_CACHE)
async def publish_capacity_table(rows: list[dict[str, Any]], usage: dict[str, Any] | None) -> None:
    """The Prefect UI's view of the pool: one row per account."""
    table, description = capacity_table(rows, usage)
    await acreate_table_artifact(table, key="pool-capacity", description=description)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
async def reclaim_expired_leases() -> int:
    async with open_pool(events=False) as pool:
        reclaimed: int = await pool.capacity.reclaim_expired()
        return reclaimed


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
def reap_stale_executions() -> int:
    """Executions whose worker died (no sign of life for longer than a lease) end as crashed."""
    rt = runtime()
    return ExecutionStore(rt.db).reap_stale(
        older_than=timedelta(seconds=rt.config.capacity.lease_timeout_seconds)
    )


@task(retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE)
async def usage_report() -> dict[str, Any] | None:
    """The Admin API's usage per key over the last hour, when ANTHROPIC_ADMIN_API_KEY is set."""
    return await read_usage_report(runtime().settings)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
def prune_old_snapshots() -> int:
    """Snapshots older than ``capacity.snapshotRetentionDays`` are deleted."""
    rt = runtime()
    return prune_capacity_snapshots(rt.db, keep=timedelta(days=rt.config.capacity.snapshot_retention_days))
