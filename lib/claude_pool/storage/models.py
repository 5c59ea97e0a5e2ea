"""The tables. Names of the original system are kept where users look for them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = [
    "AccountAlert",
    "AccountStatus",
    "BreakerTransition",
    "CapacitySnapshot",
    "ClaudeAccount",
    "ExecutionStatus",
    "OrchestratorExecution",
    "QuotaAlert",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Always aware UTC in Python; SQLite keeps no zone, so it is stored as naive UTC there."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(*, nullable: bool = False, index: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True, index=index)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=index)


class AccountStatus:
    ACTIVE = "active"
    DISABLED = "disabled"
    INVALID_CREDENTIALS = "invalid_credentials"
    SPEND_EXHAUSTED = "spend_exhausted"
    ALL = (ACTIVE, DISABLED, INVALID_CREDENTIALS, SPEND_EXHAUSTED)


class ExecutionStatus:
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CRASHED = "crashed"
    CANCELLED = "cancelled"
    TERMINAL = (SUCCEEDED, FAILED, CRASHED, CANCELLED)


class ClaudeAccount(SQLModel, table=True):
    __tablename__ = "claude_accounts"
    __table_args__ = (sa.UniqueConstraint("organization_id", "name", name="uq_claude_accounts_org_name"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organization_id: str = Field(index=True, max_length=64)
    name: str = Field(max_length=100)
    # AES-256-GCM sealed value; the plaintext key is never stored.
    api_key_encrypted: str = Field(sa_type=sa.Text)
    api_key_fingerprint: str = Field(max_length=64, unique=True)
    api_key_hint: str = Field(max_length=32)
    tier: str = Field(max_length=32)
    requests_per_minute: int | None = None
    input_tokens_per_minute: int | None = None
    output_tokens_per_minute: int | None = None
    daily_token_budget: int | None = Field(default=None, sa_type=sa.BigInteger)
    monthly_token_budget: int | None = Field(default=None, sa_type=sa.BigInteger)
    monthly_spend_budget_usd: float | None = None
    max_in_flight: int | None = None
    priority: int = 100
    weight: int = 1
    capacity_group: str | None = Field(default=None, max_length=64, index=True)
    status: str = Field(default=AccountStatus.ACTIVE, max_length=32, index=True)
    status_reason: str | None = Field(default=None, max_length=500)
    status_until: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    key_rotated_at: datetime | None = _ts(nullable=True)


class QuotaAlert(SQLModel, table=True):
    __tablename__ = "quota_alerts"
    __table_args__ = (
        # One alert per (account, metric, threshold, kind, window), however many sweeps see it.
        sa.UniqueConstraint(
            "account_id", "metric", "threshold", "kind", "window", name="uq_quota_alerts_once"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="claude_accounts.id", ondelete="CASCADE", index=True, max_length=36)
    organization_id: str = Field(index=True, max_length=64)
    metric: str = Field(max_length=64)
    threshold: float
    kind: str = Field(default="threshold", max_length=16)
    window: str = Field(max_length=32)
    observed: float
    limit: float
    fraction: float
    created_at: datetime = _ts(index=True)
    sent_at: datetime | None = _ts(nullable=True, index=True)
    send_attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    slack_channel: str | None = Field(default=None, max_length=100)
    slack_ts: str | None = Field(default=None, max_length=64)
    # A sweep claims a row (a lease) before sending it, so that two sweeps never send it twice;
    # a claim whose sweep died expires and the row is sent by a later one (migration 0002).
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = _ts(nullable=True)


class AccountAlert(SQLModel, table=True):
    """An account's trouble for Slack (breaker opened, credentials rejected, budget exhausted,
    disabled): one ``incident`` row per incident, one ``recovery`` row when it ends, and ``digest``
    rows that sum up a flapping account. Sent by the same outbox as ``quota_alerts`` (migration 0003)."""

    __tablename__ = "account_alerts"
    __table_args__ = (
        # One row per (account, kind, phase, incident number): two workers seeing the same
        # incident record it once.
        sa.UniqueConstraint("account_id", "kind", "phase", "sequence", name="uq_account_alerts_once"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="claude_accounts.id", ondelete="CASCADE", index=True, max_length=36)
    organization_id: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=32)
    phase: str = Field(max_length=16)
    sequence: int
    detail: str | None = Field(default=None, max_length=1000)
    until: datetime | None = _ts(nullable=True)
    openings: int = 0
    recoveries: int = 0
    created_at: datetime = _ts(index=True)
    updated_at: datetime = _ts()
    sent_at: datetime | None = _ts(nullable=True, index=True)
    send_attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    slack_channel: str | None = Field(default=None, max_length=100)
    slack_ts: str | None = Field(default=None, max_length=64)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = _ts(nullable=True)


class OrchestratorExecution(SQLModel, table=True):
    __tablename__ = "orchestrator_executions"
    __table_args__ = (
        sa.UniqueConstraint("organization_id", "idempotency_key", name="uq_executions_idempotency"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organization_id: str = Field(index=True, max_length=64)
    user_id: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, max_length=200)
    status: str = Field(default=ExecutionStatus.PENDING, max_length=16, index=True)
    model: str = Field(max_length=100)
    max_tokens: int
    strategy: str | None = Field(default=None, max_length=32)
    request_json: str = Field(sa_type=sa.Text)
    account_id: str | None = Field(
        default=None, foreign_key="claude_accounts.id", ondelete="SET NULL", index=True, max_length=36
    )
    attempts: int = 0
    accounts_tried: str | None = Field(default=None, sa_type=sa.Text)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    latency_ms: float | None = None
    response_text: str | None = Field(default=None, sa_type=sa.Text)
    stop_reason: str | None = Field(default=None, max_length=32)
    upstream_request_id: str | None = Field(default=None, max_length=100)
    error_type: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, sa_type=sa.Text)
    flow_run_id: str | None = Field(default=None, max_length=36, index=True)
    created_at: datetime = _ts(index=True)
    started_at: datetime | None = _ts(nullable=True)
    heartbeat_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)


class BreakerTransition(SQLModel, table=True):
    __tablename__ = "breaker_transitions"

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="claude_accounts.id", ondelete="CASCADE", index=True, max_length=36)
    from_state: str = Field(max_length=16)
    to_state: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=500)
    consecutive_failures: int = 0
    open_until: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts(index=True)


class CapacitySnapshot(SQLModel, table=True):
    __tablename__ = "capacity_snapshots"

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="claude_accounts.id", ondelete="CASCADE", index=True, max_length=36)
    bucket_id: str = Field(max_length=100)
    taken_at: datetime = _ts(index=True)
    requests_limit: int
    requests_remaining: float
    input_tokens_limit: int
    input_tokens_remaining: float
    output_tokens_limit: int
    output_tokens_remaining: float
    in_flight: int = 0
    cooldown_until: datetime | None = _ts(nullable=True)
    breaker_state: str | None = Field(default=None, max_length=16)
    headroom: float
