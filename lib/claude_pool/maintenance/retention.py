"""What the pool keeps of its own history, and for how long: ``capacity_snapshots`` grows by one
row per account a minute (1,440 a day each), so rows older than the configured retention
(``capacity.snapshotRetentionDays``) are deleted by each capacity sync."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col

from claude_pool.storage import CapacitySnapshot, Database, utcnow

__all__ = ["prune_capacity_snapshots"]


def prune_capacity_snapshots(db: Database, *, keep: timedelta, now: datetime | None = None) -> int:
    """Delete the snapshots taken more than ``keep`` before ``now``; returns how many went."""
    cutoff = (now or utcnow()) - keep
    with db.session() as session:
        result = session.execute(sa.delete(CapacitySnapshot).where(col(CapacitySnapshot.taken_at) < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
