"""Capacity sync steps: snapshot the live view, compare the Admin API's usage with the pool's records,
publish the view, reclaim dead workers' leases."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from prefect import task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE

from claude_pool.maintenance.capacity_sync import capacity_table, snapshot_pool, store_snapshot
from claude_pool.maintenance.retention import prune_capacity_snapshots
from claude_pool.maintenance.usage_drift import check_usage_drift
from claude_pool.records.executions import ExecutionStore
from claude_pool_tasks.context import open_pool, retry_on_infrastructure, runtime
from claude_pool_tasks.prefect_events import emit_usage_drift

__all__ = [
    "compare_usage",
    "prune_old_snapshots",
    "publish_capacity_table",
    "reap_stale_executions",
    "reclaim_expired_leases",
    "snapshot_capacity",
]


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
async def snapshot_capacity() -> list[dict[str, Any]]:
    """Each account's live usage and headroom, written to ``capacity_snapshots``."""
    async with open_pool(events=False) as pool:
        rows = await snapshot_pool(pool)
    await asyncio.to_thread(store_snapshot, runtime().db, rows)
    return [r.as_dict() for r in rows]


@task(cache_policy=NO_CACHE)
async def publish_capacity_table(rows: list[dict[str, Any]], usage: dict[str, Any]) -> None:
    """The Prefect UI's view of the pool: one row per account, with the usage comparison's notes
    (a drift, or why the Admin API could not be read)."""
    table, description = capacity_table(rows, usage["usage"], notes=usage["notes"])
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


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
async def compare_usage() -> dict[str, Any]:
    """The Admin API's usage per pooled key over the last hour against what the pool recorded
    (when ANTHROPIC_ADMIN_API_KEY is set): a key another client spends from raises a usage-drift
    account alert and a ``claude-pool.account.usage-drift`` event. An admin key that fails is a
    warning in the run's logs and the table's notes, never a failed task."""
    check = await check_usage_drift(runtime())
    emit_usage_drift(check)
    return check.as_dict()


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
def prune_old_snapshots() -> int:
    """Snapshots older than ``capacity.snapshotRetentionDays`` are deleted."""
    rt = runtime()
    return prune_capacity_snapshots(rt.db, keep=timedelta(days=rt.config.capacity.snapshot_retention_days))
