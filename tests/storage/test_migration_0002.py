"""Migration 0002 (alert claims) on a database that already holds alerts, on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib

import pytest
import sqlalchemy as sa

from claude_pool.storage import Database


def _columns(db: Database) -> set[str]:
    return {c["name"] for c in sa.inspect(db.engine).get_columns("quota_alerts")}


def test_0002_adds_the_claim_columns_and_keeps_the_rows(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.upgrade("0001")
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO claude_accounts (id, organization_id, name, api_key_encrypted, api_key_fingerprint,"
                    " api_key_hint, tier, priority, weight, status, created_at, updated_at) VALUES ('a1', 'org', 'n',"
                    " 'sealed', 'fp', 'hint', 'pro', 100, 1, 'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                sa.text(
                    'INSERT INTO quota_alerts (account_id, organization_id, metric, threshold, kind, "window",'
                    " observed, \"limit\", fraction, created_at, send_attempts) VALUES ('a1', 'org',"
                    " 'requests_per_minute', 0.8, 'threshold', '2026-11-26T09:41', 80, 100, 0.8, CURRENT_TIMESTAMP, 0)"
                )
            )
        assert "claimed_by" not in _columns(db)
        db.upgrade()
        assert {"claimed_by", "claimed_until"} <= _columns(db)
        indexes = {i["name"] for i in sa.inspect(db.engine).get_indexes("quota_alerts")}
        assert "ix_quota_alerts_sent_at" in indexes
        uniques = {u["name"] for u in sa.inspect(db.engine).get_unique_constraints("quota_alerts")}
        assert "uq_quota_alerts_once" in uniques
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM quota_alerts")).scalar_one() == 1
        db.downgrade("0001")
        assert "claimed_by" not in _columns(db)
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM quota_alerts")).scalar_one() == 1
    finally:
        db.dispose()


@pytest.mark.parametrize(
    "module",
    [
        "claude_pool.quota",
        "claude_pool.quota.rules",
        "claude_pool.quota.outbox",
        "claude_pool.quota.slack",
        "claude_pool.cli.alerts_cmd",
    ],
)
def test_all_names_exist(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing
