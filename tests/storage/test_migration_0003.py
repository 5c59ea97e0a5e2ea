"""Migration 0003 (account alerts) builds the table the model describes, and comes off again."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from claude_pool.storage import AccountAlert, Database


def test_0003_creates_account_alerts_as_the_model_says_and_drops_it(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.upgrade()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert [d for d in diff if AccountAlert.__tablename__ in repr(d)] == []
        uniques = {u["name"] for u in sa.inspect(db.engine).get_unique_constraints("account_alerts")}
        assert "uq_account_alerts_once" in uniques
        db.downgrade("0002")
        assert "account_alerts" not in sa.inspect(db.engine).get_table_names()
    finally:
        db.dispose()
