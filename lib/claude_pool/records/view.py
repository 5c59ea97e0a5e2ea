"""What a caller sees of one execution: the HTTP response, the ``delegate`` flow's return value and
each outcome of a batch are all an :class:`ExecutionView`, so the three cannot drift apart.

Built from the stored row (or from a row the database did not take, see
``claude_pool.records.recorded``); plain values only: no key, no client, nothing unredacted.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from claude_pool.core.redaction import redact
from claude_pool.storage import ExecutionStatus, OrchestratorExecution

__all__ = ["ExecutionView"]


def _attempt_details(row: OrchestratorExecution) -> tuple[dict[str, Any], ...]:
    try:
        details = json.loads(row.accounts_tried) if row.accounts_tried else []
    except ValueError:  # a row written by hand, or cut short: the rest of the view still stands
        return ()
    return tuple(d for d in details if isinstance(d, dict))


@dataclass(frozen=True)
class ExecutionView:
    """One execution as callers see it. ``execution_id`` is ``None`` only for a request whose row
    could not be written at all (the database stayed away): it was never sent upstream."""

    execution_id: str | None
    organization_id: str
    status: str
    model: str
    created_at: datetime
    user_id: str | None = None
    idempotency_key: str | None = None
    flow_run_id: str | None = None
    account_id: str | None = None
    account_name: str | None = None
    attempts: int = 0
    failovers: int = 0
    attempt_details: tuple[dict[str, Any], ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    latency_ms: float | None = None
    text: str | None = None
    stop_reason: str | None = None
    upstream_request_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, row: OrchestratorExecution, *, account_name: str | None = None) -> ExecutionView:
        details = _attempt_details(row)
        tried = {d.get("account_id") for d in details}
        return cls(
            execution_id=row.id,
            organization_id=row.organization_id,
            status=row.status,
            model=row.model,
            created_at=row.created_at,
            user_id=row.user_id,
            idempotency_key=row.idempotency_key,
            flow_run_id=row.flow_run_id,
            account_id=row.account_id,
            account_name=account_name,
            attempts=row.attempts,
            failovers=max(0, len(tried) - 1),
            attempt_details=details,
            input_tokens=row.input_tokens or 0,
            output_tokens=row.output_tokens or 0,
            cache_creation_input_tokens=row.cache_creation_input_tokens or 0,
            cache_read_input_tokens=row.cache_read_input_tokens or 0,
            latency_ms=row.latency_ms,
            text=row.response_text,
            stop_reason=row.stop_reason,
            upstream_request_id=row.upstream_request_id,
            error_type=row.error_type,
            # Stored redacted already; a row written before redaction existed is redacted here.
            error_message=None if row.error_message is None else redact(row.error_message),
            finished_at=row.finished_at,
        )

    @property
    def succeeded(self) -> bool:
        return self.status == ExecutionStatus.SUCCEEDED

    @property
    def finished(self) -> bool:
        return self.status in ExecutionStatus.TERMINAL

    def named(self, account_name: str | None) -> ExecutionView:
        return replace(self, account_name=account_name)

    def as_dict(self, *, exclude: Collection[str] = ()) -> dict[str, Any]:
        """JSON-ready values (times as ISO 8601): what crosses a Prefect task boundary."""
        plain: dict[str, Any] = {}
        for f in fields(self):
            if f.name in exclude:
                continue
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            plain[f.name] = value
        return plain
