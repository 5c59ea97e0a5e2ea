"""The pool's upkeep, run on schedules: cheap probes of each account, the capacity snapshot
(with the Admin API's usage report) and the retention of the snapshots.

May import everything below the front ends; never ``http`` or ``cli``.
"""

from __future__ import annotations

from claude_pool.maintenance.capacity_sync import (
    CapacityRow,
    capacity_table,
    read_usage_report,
    snapshot_pool,
    store_snapshot,
)
from claude_pool.maintenance.probe import ProbeResult, probe_account
from claude_pool.maintenance.retention import prune_capacity_snapshots

__all__ = ["CapacityRow", "ProbeResult", "capacity_table", "probe_account",
           "prune_capacity_snapshots", "read_usage_report", "snapshot_pool", "store_snapshot"]
