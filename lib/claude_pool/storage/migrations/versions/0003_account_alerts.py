"""account alerts: breaker, credential, budget and status alerts for Slack, sent by the outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("detail", sa.String(length=1000), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("openings", sa.Integer(), nullable=False),
        sa.Column("recoveries", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("send_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("slack_channel", sa.String(length=100), nullable=True),
        sa.Column("slack_ts", sa.String(length=64), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["claude_accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "kind", "phase", "sequence", name="uq_account_alerts_once"),
    )
    with op.batch_alter_table("account_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_alerts_account_id"), ["account_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_account_alerts_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_account_alerts_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_account_alerts_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("account_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_alerts_sent_at"))
        batch_op.drop_index(batch_op.f("ix_account_alerts_created_at"))
        batch_op.drop_index(batch_op.f("ix_account_alerts_organization_id"))
        batch_op.drop_index(batch_op.f("ix_account_alerts_account_id"))
    op.drop_table("account_alerts")
