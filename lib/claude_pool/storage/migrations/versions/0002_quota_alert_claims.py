"""quota alert claims: a lease per alert so that concurrent sweeps never send one twice

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Hand-written with ``batch_alter_table``: on SQLite, Alembic rebuilds the table (SQLite cannot alter
columns in place); on PostgreSQL the same calls become plain ``ALTER TABLE``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quota_alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
        # The outbox looks for rows with sent_at IS NULL on every sweep.
        batch_op.create_index(batch_op.f("ix_quota_alerts_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quota_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quota_alerts_sent_at"))
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claimed_by")
