"""``orchestrator_executions``: one row per delegation, from pending to a terminal status.

A row is created before the call (so a crash leaves a trace), updated once with the outcome, and
found again by its idempotency key, so a retried step never runs the same request twice. Text that
comes from callers or from Claude is redacted before it is stored: a key pasted into a prompt must
not reach the database in the clear.

What a row says of an outcome is written by :func:`new_execution`, :func:`apply_success` and
:func:`apply_failure`, shared by the store and by a caller that must describe an outcome the
database did not take (see ``claude_pool.records.recorded``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from claude_pool.core.errors import ExecutionNotFound, InvalidInput, StorageError, UpstreamError
from claude_pool.core.logs import log_event
from claude_pool.core.redaction import redact
from claude_pool.core.repeating import repeating
from claude_pool.pool.models import AttemptRecord, DelegationRequest, DelegationResult
from claude_pool.storage import Database, ExecutionStatus, OrchestratorExecution, new_id, utcnow
from claude_pool.storage.queries import where_given

__all__ = [
    "ExecutionFailure",
    "ExecutionNotFound",
    "ExecutionStore",
    "apply_failure",
    "apply_success",
    "new_execution",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutionFailure:
    """How an execution failed, as its row keeps it: the error's type name and message."""

    error_type: str
    message: str
    upstream_request_id: str | None = None

    @classmethod
    def of(cls, error: BaseException) -> ExecutionFailure:
        request_id = error.request_id if isinstance(error, UpstreamError) else None
        return cls(type(error).__name__, str(error), request_id)


def new_execution(
    request: DelegationRequest,
    *,
    execution_id: str | None = None,
    flow_run_id: str | None = None,
    running: bool = False,
) -> OrchestratorExecution:
    """The row for ``request`` before any call (not yet stored)."""
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
    return row


def apply_success(row: OrchestratorExecution, result: DelegationResult) -> None:
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


def apply_failure(
    row: OrchestratorExecution,
    failure: ExecutionFailure,
    *,
    attempts: Sequence[AttemptRecord] = (),
    status: str = ExecutionStatus.FAILED,
) -> None:
    row.status = status
    row.error_type = failure.error_type
    row.error_message = redact(failure.message)[:4000]
    if attempts:
        row.attempts = len(attempts)
        row.accounts_tried = json.dumps([a.model_dump() for a in attempts])
        row.account_id = attempts[-1].account_id
    if failure.upstream_request_id:
        row.upstream_request_id = failure.upstream_request_id
    row.finished_at = utcnow()


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
                    raise InvalidInput("execution_id", "belongs to another organization's execution")
                return earlier, True
        row = new_execution(request, execution_id=execution_id, flow_run_id=flow_run_id, running=running)
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
        self,
        *,
        organization_id: str | None = None,
        status: str | None = None,
        flow_run_id: str | None = None,
        limit: int = 50,
    ) -> list[OrchestratorExecution]:
        """The newest first, narrowed by whichever of organization, status and Prefect flow run
        (the run that recorded them) are given."""
        with self.db.session() as session:
            query = where_given(
                select(OrchestratorExecution),
                (OrchestratorExecution.organization_id, organization_id),
                (OrchestratorExecution.status, status),
                (OrchestratorExecution.flow_run_id, flow_run_id),
            )
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

    def add_finished(self, row: OrchestratorExecution) -> OrchestratorExecution:
        """Store a row whose outcome is known already (a short call recorded in one write); a row
        of that id stored already (a retried write whose acknowledgement was lost) is kept."""
        with self.db.session() as session:
            existing = session.get(OrchestratorExecution, row.id)
            if existing is not None:
                return existing
            if row.started_at is None:
                row.started_at = row.created_at
            session.add(row)
        return row

    def succeed(self, execution_id: str, result: DelegationResult) -> OrchestratorExecution:
        with self.db.session() as session:
            row = self._row(session, execution_id)
            if row.status == ExecutionStatus.SUCCEEDED:
                return row  # recorded already (a retried recording step): keep the first
            apply_success(row, result)
            session.add(row)
        return row

    def fail(
        self,
        execution_id: str,
        error: BaseException | ExecutionFailure,
        *,
        attempts: Sequence[AttemptRecord] = (),
        status: str = ExecutionStatus.FAILED,
    ) -> OrchestratorExecution:
        """Record the failure (an exception, or its type name and message as an
        :class:`ExecutionFailure`); a success recorded already is kept."""
        failure = error if isinstance(error, ExecutionFailure) else ExecutionFailure.of(error)
        with self.db.session() as session:
            row = self._row(session, execution_id)
            if row.status == ExecutionStatus.SUCCEEDED:
                return row  # never overwrite a result we got
            apply_failure(row, failure, attempts=attempts, status=status)
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
                log_event(
                    logger,
                    logging.WARNING,
                    "execution heartbeat failed",
                    execution_id=execution_id,
                    error=str(exc),
                )
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
