"""The scheduled flows: capacity sync and the health check (their intervals: the config's
``capacity.syncIntervalSeconds`` and ``healthCheck.intervalSeconds``, see claude_pool_flows.schedules)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from claude_pool_tasks.capacity import (
    compare_usage,
    prune_old_snapshots,
    publish_capacity_table,
    reap_stale_executions,
    reclaim_expired_leases,
    snapshot_capacity,
)
from claude_pool_tasks.probe import accounts_to_probe, probe
from claude_pool_tasks.quota import send_unsent_alerts

__all__ = ["capacity_sync", "health_check"]


@flow(name="capacity-sync", timeout_seconds=300)
async def capacity_sync() -> dict[str, Any]:
    """Write the live capacity of every account to the database, publish it as a table artifact,
    compare the Admin API usage report with the pool's records (when ANTHROPIC_ADMIN_API_KEY is
    set: a key another client spends from is alerted in Slack at once; an admin key that fails is a
    warning, the table is published all the same), reclaim what dead workers held, and delete
    snapshots older than capacity.snapshotRetentionDays."""
    reclaimed = await reclaim_expired_leases()
    crashed = reap_stale_executions()
    rows = await snapshot_capacity()
    usage = await compare_usage()
    await publish_capacity_table(rows, usage)
    if usage["alerts_raised"] or usage["alerts_ended"]:
        await send_unsent_alerts()  # a drift is news now, not at the next quota sweep
    pruned = prune_old_snapshots()
    return {
        "accounts": len(rows),
        "leases_reclaimed": reclaimed,
        "executions_crashed": crashed,
        "usage_report_keys": None if usage["usage"] is None else len(usage["usage"]),
        "usage_drift": usage["drifting"],
        "usage_warning": usage["warning"],
        "snapshots_pruned": pruned,
    }


@flow(name="health-check", timeout_seconds=600)
async def health_check() -> list[dict[str, Any]]:
    """Probe each account cheaply: mark revoked keys, let half-open breakers close on success."""
    results: list[dict[str, Any]] = await probe(accounts_to_probe())
    return results
