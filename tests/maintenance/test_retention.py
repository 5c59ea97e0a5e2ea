"""``capacity_snapshots`` is kept for the configured days, not forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from claude_pool.maintenance import CapacityRow, prune_capacity_snapshots, store_snapshot
from claude_pool.storage import ClaudeAccount, Database

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _row(account_id: str) -> CapacityRow:
    return CapacityRow(
        account_id=account_id, account_name="a", organization_id="o", status="active", bucket_id="b",
        breaker_state="closed", requests_limit=60, requests_remaining=60.0, input_tokens_limit=1000,
        input_tokens_remaining=1000.0, output_tokens_limit=100, output_tokens_remaining=100.0,
        in_flight=0, cooldown_until=None, headroom=1.0,
    )


def test_snapshots_older_than_the_retention_are_deleted_and_newer_ones_kept(db: Database) -> None:
    account = ClaudeAccount(
        organization_id="o", name="a", api_key_encrypted="x", api_key_fingerprint="f", api_key_hint="h", tier="pro"
    )
    with db.session() as session:
        session.add(account)
    for age in (timedelta(days=9), timedelta(days=7, minutes=1), timedelta(days=6), timedelta(minutes=1)):
        store_snapshot(db, [_row(account.id)], taken_at=NOW - age)
    assert prune_capacity_snapshots(db, keep=timedelta(days=7), now=NOW) == 2
    with db.engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM capacity_snapshots")).scalar_one()
    assert left == 2
    assert prune_capacity_snapshots(db, keep=timedelta(days=7), now=NOW) == 0
