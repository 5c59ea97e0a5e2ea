"""The scheduled flows: capacity sync (every 60 s) and the health check."""

from __future__ import annotations

from typing import Any

from prefect import flow

from claude_pool_tasks.capacity import (
    publish_capacity_table,
    reap_stale_executions,
    reclaim_expired_leases,
    snapshot_capacity,
    usage_report,
)
from claude_pool_tasks.probe import accounts_to_probe, probe

__all__ = ["capacity_sync", "health_check"]


@flow(name="capacity-sync")
async def capacity_sync() -> dict[str, Any]:
    """Write the live capacity of every account to the database, publish it as a table artifact,
    read the Admin API usage report (when configured), and reclaim what dead workers held."""
    reclaimed = await reclaim_expired_leases()
    crashed = reap_stale_executions()
    rows = await snapshot_capacity()
    usage = await usage_report()
    await publish_capacity_table(rows, usage)
    return {
        "accounts": len(rows),
        "leases_reclaimed": reclaimed,
        "executions_crashed": crashed,
        "usage_report_keys": None if usage is None else len(usage),
    }


@flow(name="health-check")
async def health_check() -> list[dict[str, Any]]:
    """Probe each account cheaply: mark revoked keys, let half-open breakers close on success."""
    results: list[dict[str, Any]] = await probe(accounts_to_probe())
    return results
