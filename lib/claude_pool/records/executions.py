"""``orchestrator_executions``: one row per delegation, from pending to a terminal status.

A row is created before the call (so a crash leaves a trace), updated once with the outcome, and
found again by its idempotency key, so a retried step never runs the same request twice. Text that
comes from callers or from Claude is redacted before it is stored: a key pasted into a prompt must
not reach the database in the clear.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from claude_pool.core.errors import NotFound, StorageError, UpstreamError
from claude_pool.core.logs import log_event
from claude_pool.core.redaction import redact
from claude_pool.core.repeating import repeating
from claude_pool.pool.models import AttemptRecord, DelegationRequest, DelegationResult
from claude_pool.storage import Database, ExecutionStatus, OrchestratorExecution, new_id, utcnow

__all__ = ["ExecutionNotFound", "ExecutionStore"]

logger = logging.getLogger(__name__)


class ExecutionNotFound(NotFound):
    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"no execution {execution_id!r}")


class ExecutionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def start(
        self,
        request: DelegationRequest,
        *,
        flow_run_id: str | None = None,
        running: bool = False,
        execution_id: str | None = None,
    ) -> tuple[OrchestratorExecution, bool]:
        """The execution for ``request``: a new pending row (``running`` at once when the call
        follows immediately), or (``created`` False) the row already made for the same
        organization and idempotency key.

        A caller that tries again after a failed start passes the same ``execution_id`` each time:
        when the failure hid a commit that went through (the acknowledgement was lost), the row
        made then is returned as this start's own, instead of a second row for one request."""
        if request.idempotency_key:
            existing = self.find_by_idempotency_key(request.organization_id, request.idempotency_key)
            if existing is not None:
                return existing, False
        if execution_id is not None:
            with self.db.session() as session:
                earlier = session.get(OrchestratorExecution, execution_id)
            if earlier is not None:
                if earlier.organization_id != request.organization_id:
                    raise ValueError(f"execution id {execution_id!r} belongs to another organization")
                return earlier, True
        row = OrchestratorExecution(
            id=execution_id or new_id(),
            organization_id=request.organization_id,
            user_id=request.user_id,
            idempotency_key=request.idempotency_key,
            model=request.model,
            max_tokens=request.max_tokens,
            strategy=request.strategy.value if request.strategy else None,
            request_json=redact(request.model_dump_json(exclude={"deadline"})),
            flow_run_id=flow_run_id,
        )
        if running:
            row.status = ExecutionStatus.RUNNING
            row.started_at = row.heartbeat_at = utcnow()
        try:
            with self.db.session() as session:
                session.add(row)
        except Exception as exc:
            if request.idempotency_key and isinstance(exc.__cause__, IntegrityError):
                existing = self.find_by_idempotency_key(request.organization_id, request.idempotency_key)
                if existing is not None:  # a concurrent start with the same key won the race
                    return existing, False
            raise
        return row, True

    def find_by_idempotency_key(self, organization_id: str, key: str) -> OrchestratorExecution | None:
        with self.db.session() as session:
            return session.exec(
                select(OrchestratorExecution).where(
                    OrchestratorExecution.organization_id == organization_id,
                    OrchestratorExecution.idempotency_key == key,
                )
            ).first()

    def get(
        self, execution_id: str, *, organization_ids: Sequence[str] | None = None
    ) -> OrchestratorExecution:
        with self.db.session() as session:
            row = session.get(OrchestratorExecution, execution_id)
        if row is None or (organization_ids is not None and row.organization_id not in organization_ids):
            raise ExecutionNotFound(execution_id)
        return row

    def list(
        self, *, organization_id: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[OrchestratorExecution]:
        with self.db.session() as session:
            query = select(OrchestratorExecution)
            if organization_id is not None:
                query = query.where(OrchestratorExecution.organization_id == organization_id)
            if status is not None:
                query = query.where(OrchestratorExecution.status == status)
            query = query.order_by(col(OrchestratorExecution.created_at).desc()).limit(limit)
            return list(session.exec(query))

    def mark_running(self, execution_id: str, *, flow_run_id: str | None = None) -> None:
        now = utcnow()
        with self.db.session() as session:
            row = self._row(session, execution_id)
            if row.status in ExecutionStatus.TERMINAL:
                return
            row.status = ExecutionStatus.RUNNING
            row.started_at = row.started_at or now
            row.heartbeat_at = now
            if flow_run_id:
                row.flow_run_id = flow_run_id
            session.add(row)

    def succeed(self, execution_id: str, result: DelegationResult) -> OrchestratorExecution:
        with self.db.session() as session:
            row = self._row(session, execution_id)
            if row.status == ExecutionStatus.SUCCEEDED:
                return row  # recorded already (a retried recording step): keep the first
            row.status = ExecutionStatus.SUCCEEDED
            row.account_id = result.account_id
            row.attempts = len(result.attempts)
            row.accounts_tried = json.dumps([a.model_dump() for a in result.attempts])
            row.input_tokens = result.usage.input_tokens
            row.output_tokens = result.usage.output_tokens
            row.cache_creation_input_tokens = result.usage.cache_creation_input_tokens
            row.cache_read_input_tokens = result.usage.cache_read_input_tokens
            row.latency_ms = round(result.latency_ms, 3)
            row.response_text = redact(result.text)
            row.stop_reason = result.stop_reason
            row.upstream_request_id = result.upstream_request_id
            row.error_type = row.error_message = None
            row.finished_at = utcnow()
            session.add(row)
        return row

    def fail(
        self,
        execution_id: str,
        error: BaseException,
        *,
        attempts: Sequence[AttemptRecord] = (),
        status: str = ExecutionStatus.FAILED,
    ) -> OrchestratorExecution:
        with self.db.session() as session:
            row = self._row(session, execution_id)
            if row.status == ExecutionStatus.SUCCEEDED:
                return row  # never overwrite a result we got
            row.status = status
            row.error_type = type(error).__name__
            row.error_message = redact(str(error))[:4000]
            if attempts:
                row.attempts = len(attempts)
                row.accounts_tried = json.dumps([a.model_dump() for a in attempts])
                row.account_id = attempts[-1].account_id
            if isinstance(error, UpstreamError) and error.request_id:
                row.upstream_request_id = error.request_id
            row.finished_at = utcnow()
            session.add(row)
        return row

    def heartbeat(self, execution_id: str) -> bool:
        """The running execution is alive now; False when it is no longer running."""
        with self.db.session() as session:
            row = session.get(OrchestratorExecution, execution_id)
            if row is None or row.status != ExecutionStatus.RUNNING:
                return False
            row.heartbeat_at = utcnow()
            session.add(row)
            return True

    def kept_alive(self, execution_id: str, *, lease_seconds: float) -> AbstractAsyncContextManager[None]:
        """While the body (the call) runs, beat every third of a lease period: ``reap_stale`` ends
        rows silent for a lease period, and a long call is not a dead worker."""

        async def beat() -> bool:
            try:
                return await asyncio.to_thread(self.heartbeat, execution_id)
            except StorageError as exc:  # the database is away for a moment: beat again later
                log_event(logger, logging.WARNING, "execution heartbeat failed",
                          execution_id=execution_id, error=str(exc))
                return True

        return repeating(lease_seconds / 3, beat, name=f"heartbeat-{execution_id}")

    def reap_stale(self, *, older_than: timedelta) -> int:
        """Executions left ``running`` or ``pending`` by a worker that died end as ``crashed``."""
        cutoff: datetime = utcnow() - older_than
        count = 0
        with self.db.session() as session:
            rows = session.exec(
                select(OrchestratorExecution).where(
                    col(OrchestratorExecution.status).in_([ExecutionStatus.RUNNING, ExecutionStatus.PENDING])
                )
            )
            for row in rows:
                seen = row.heartbeat_at or row.started_at or row.created_at
                if seen < cutoff:
                    row.status = ExecutionStatus.CRASHED
                    row.error_type = "WorkerLost"
                    row.error_message = (
                        f"no sign of life since {seen.isoformat(timespec='seconds')}; the worker died"
                    )
                    row.finished_at = utcnow()
                    session.add(row)
                    count += 1
        return count

    @staticmethod
    def _row(session: Session, execution_id: str) -> OrchestratorExecution:
        row = session.get(OrchestratorExecution, execution_id)
        if row is None:
            raise ExecutionNotFound(execution_id)
        return row
