"""initial tables

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "claude_accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("api_key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("api_key_hint", sa.String(length=32), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("input_tokens_per_minute", sa.Integer(), nullable=True),
        sa.Column("output_tokens_per_minute", sa.Integer(), nullable=True),
        sa.Column("daily_token_budget", sa.BigInteger(), nullable=True),
        sa.Column("monthly_token_budget", sa.BigInteger(), nullable=True),
        sa.Column("monthly_spend_budget_usd", sa.Float(), nullable=True),
        sa.Column("max_in_flight", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("capacity_group", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.Column("status_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("api_key_fingerprint"),
        sa.UniqueConstraint("organization_id", "name", name="uq_claude_accounts_org_name"),
    )
    with op.batch_alter_table("claude_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_claude_accounts_capacity_group"), ["capacity_group"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_claude_accounts_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_claude_accounts_status"), ["status"], unique=False)

    op.create_table(
        "breaker_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("open_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["claude_accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("breaker_transitions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_breaker_transitions_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_breaker_transitions_created_at"), ["created_at"], unique=False)

    op.create_table(
        "capacity_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("bucket_id", sa.String(length=100), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests_limit", sa.Integer(), nullable=False),
        sa.Column("requests_remaining", sa.Float(), nullable=False),
        sa.Column("input_tokens_limit", sa.Integer(), nullable=False),
        sa.Column("input_tokens_remaining", sa.Float(), nullable=False),
        sa.Column("output_tokens_limit", sa.Integer(), nullable=False),
        sa.Column("output_tokens_remaining", sa.Float(), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("cooldown_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("breaker_state", sa.String(length=16), nullable=True),
        sa.Column("headroom", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["claude_accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("capacity_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_capacity_snapshots_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_capacity_snapshots_taken_at"), ["taken_at"], unique=False)

    op.create_table(
        "orchestrator_executions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("max_tokens", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=True),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("accounts_tried", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_creation_input_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_read_input_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("response_text", sa.Text(), nullable=True),
        sa.Column("stop_reason", sa.String(length=32), nullable=True),
        sa.Column("upstream_request_id", sa.String(length=100), nullable=True),
        sa.Column("error_type", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["claude_accounts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organization_id", "idempotency_key", name="uq_executions_idempotency"),
    )
    with op.batch_alter_table("orchestrator_executions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_orchestrator_executions_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_orchestrator_executions_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_orchestrator_executions_flow_run_id"), ["flow_run_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_orchestrator_executions_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_orchestrator_executions_status"), ["status"], unique=False)

    op.create_table(
        "quota_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("window", sa.String(length=32), nullable=False),
        sa.Column("observed", sa.Float(), nullable=False),
        sa.Column("limit", sa.Float(), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("send_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("slack_channel", sa.String(length=100), nullable=True),
        sa.Column("slack_ts", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["claude_accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "account_id", "metric", "threshold", "kind", "window", name="uq_quota_alerts_once"
        ),
    )
    with op.batch_alter_table("quota_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quota_alerts_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_quota_alerts_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_quota_alerts_organization_id"), ["organization_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("quota_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quota_alerts_organization_id"))
        batch_op.drop_index(batch_op.f("ix_quota_alerts_created_at"))
        batch_op.drop_index(batch_op.f("ix_quota_alerts_account_id"))

    op.drop_table("quota_alerts")
    with op.batch_alter_table("orchestrator_executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orchestrator_executions_status"))
        batch_op.drop_index(batch_op.f("ix_orchestrator_executions_organization_id"))
        batch_op.drop_index(batch_op.f("ix_orchestrator_executions_flow_run_id"))
        batch_op.drop_index(batch_op.f("ix_orchestrator_executions_created_at"))
        batch_op.drop_index(batch_op.f("ix_orchestrator_executions_account_id"))

    op.drop_table("orchestrator_executions")
    with op.batch_alter_table("capacity_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capacity_snapshots_taken_at"))
        batch_op.drop_index(batch_op.f("ix_capacity_snapshots_account_id"))

    op.drop_table("capacity_snapshots")
    with op.batch_alter_table("breaker_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_breaker_transitions_created_at"))
        batch_op.drop_index(batch_op.f("ix_breaker_transitions_account_id"))

    op.drop_table("breaker_transitions")
    with op.batch_alter_table("claude_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_claude_accounts_status"))
        batch_op.drop_index(batch_op.f("ix_claude_accounts_organization_id"))
        batch_op.drop_index(batch_op.f("ix_claude_accounts_capacity_group"))

    op.drop_table("claude_accounts")
