"""The pool's upkeep, run on schedules: cheap probes of each account, the capacity snapshot, the
Admin API's usage report compared with the pool's own records (usage drift) and the retention of
the snapshots.

May import everything below the front ends; never ``http`` or ``cli``.
"""

from __future__ import annotations

from claude_pool.maintenance.admin_api import AdminApi, ApiKeyInfo, KeyUsage, read_usage_report
from claude_pool.maintenance.capacity_sync import (
    CapacityRow,
    capacity_table,
    snapshot_pool,
    store_snapshot,
)
from claude_pool.maintenance.probe import ProbeResult, probe_account
from claude_pool.maintenance.retention import prune_capacity_snapshots
from claude_pool.maintenance.usage_drift import (
    DRIFT_MIN_FRACTION,
    DRIFT_MIN_TOKENS,
    DRIFT_WINDOW,
    DriftCheck,
    KeyComparison,
    check_usage_drift,
    recorded_usage,
)

__all__ = [
    "DRIFT_MIN_FRACTION",
    "DRIFT_MIN_TOKENS",
    "DRIFT_WINDOW",
    "AdminApi",
    "ApiKeyInfo",
    "CapacityRow",
    "DriftCheck",
    "KeyComparison",
    "KeyUsage",
    "ProbeResult",
    "capacity_table",
    "check_usage_drift",
    "probe_account",
    "prune_capacity_snapshots",
    "read_usage_report",
    "recorded_usage",
    "snapshot_pool",
    "store_snapshot",
]
