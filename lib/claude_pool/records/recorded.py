"""A delegation recorded as one execution row, written once for every front end: the HTTP API,
the batch runner and the Prefect tasks all run a :class:`RecordedDelegation`.

The row is started before the call (so a crash leaves a trace), marked running, kept alive while
the call lasts, and ends succeeded, failed or (on cancellation) cancelled; an activity note goes
to Slack when a notifier is given. The two steps can run apart: the HTTP API answers a caller that
does not wait between them, and the Prefect flow runs them as two tasks.

Every write is tried again while the database is unreachable (:data:`RECORD_RETRY_DELAYS`): a
result already paid for upstream is worth waiting for, and every write is idempotent (``succeed``
keeps the first success, ``start`` finds the row by idempotency key or by execution id). An
outcome the database never takes is still returned, described from the row as it would have been.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from claude_pool.core.errors import ClaudePoolError, StorageError
from claude_pool.core.logs import log_event
from claude_pool.events.execution_scope import execution_scope
from claude_pool.pool import Pool
from claude_pool.pool.models import AttemptRecord, DelegationRequest, DelegationResult
from claude_pool.pool.relay import EventRelay
from claude_pool.quota.slack import SlackNotifier
from claude_pool.records.attempt_trail import AttemptTrail
from claude_pool.records.executions import (
    ExecutionFailure,
    ExecutionStore,
    apply_failure,
    apply_success,
    new_execution,
)
from claude_pool.records.names import account_name
from claude_pool.records.notes import note_execution
from claude_pool.records.view import ExecutionView
from claude_pool.storage import ExecutionStatus, OrchestratorExecution, new_id

__all__ = ["RECORD_RETRY_DELAYS", "Recorded", "RecordedDelegation", "Spawner", "record_delegation"]

logger = logging.getLogger("claude_pool.records")
T = TypeVar("T")

#: Back-off between attempts to write an execution while the database is unreachable (about a
#: minute in all).
RECORD_RETRY_DELAYS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)

#: How long a call on the line runs before its row is written running (see run_on_the_line).
ON_THE_LINE_START_AFTER = 0.5

#: What a cancelled call leaves in its row (the server or the worker shut down mid-call).
CANCELLED = ExecutionFailure("Cancelled", "the delegation was cancelled mid-call (shutting down)")


class Spawner(Protocol):
    """Runs a coroutine in the background (the HTTP server's task set, which drains on shutdown)."""

    def __call__(self, coro: Coroutine[Any, Any, Any], *, name: str) -> object: ...


@dataclass(frozen=True)
class Recorded:
    """How a recorded delegation ended: the execution as callers see it, and the error it ended
    with (``None`` on success), for a front end that answers by the error's kind."""

    execution: ExecutionView
    error: Exception | None = None
    result: DelegationResult | None = None


class RecordedDelegation:
    """One request through the pool, recorded as one execution.

    ``execution_id`` (new when not given) is the id of every try: a retried start finds the row
    that a lost acknowledgement hid instead of making a second one. ``retried_by_caller`` are the
    errors the caller will try again itself (Prefect's task retries): raised unrecorded, the row
    left running for that next try. ``spawn`` sends the note in the background instead of
    awaiting it.
    """

    def __init__(
        self,
        executions: ExecutionStore,
        request: DelegationRequest,
        *,
        execution_id: str | None = None,
        flow_run_id: str | None = None,
        notifier: SlackNotifier | None = None,
        spawn: Spawner | None = None,
        retried_by_caller: tuple[type[Exception], ...] = (),
        retry_delays: Sequence[float] = RECORD_RETRY_DELAYS,
    ) -> None:
        self.executions = executions
        self.request = request
        self.execution_id = execution_id or new_id()
        self.flow_run_id = flow_run_id
        self.notifier = notifier
        self.spawn = spawn
        self.retried_by_caller = retried_by_caller
        self.retry_delays = tuple(retry_delays)
        self.row: OrchestratorExecution | None = None
        self.created = False
        self._running = False
        self._attempts: list[AttemptRecord] = []

    async def start(self, *, running: bool = False, patient: bool = True) -> ExecutionView:
        """The execution's row: made now (``created``), or the one already made for the request's
        idempotency key. ``running`` marks a new row running at once (the call follows);
        ``patient`` False tries the write once (a caller that answers a person at once)."""
        delays = self.retry_delays if patient else ()
        row, self.created = await self._write(
            delays,
            self.executions.start,
            self.request,
            flow_run_id=self.flow_run_id,
            running=running,
            execution_id=self.execution_id,
        )
        self.row, self.execution_id = row, row.id
        self._running = running and self.created
        return ExecutionView.of(row)

    async def run(self, pool: Pool, *, relay: EventRelay | None = None) -> Recorded:
        """Delegate and record the outcome (starting the row first when :meth:`start` was not
        called). A row that succeeded already is returned as it is: nothing is sent twice.
        ``relay``: where a pass-through request's answer goes as it comes (see ``Pool.delegate``)."""
        if self.row is None:
            try:
                await self.start(running=True)
            except StorageError as exc:
                if isinstance(exc, self.retried_by_caller):
                    raise
                return self._unstarted(exc)  # nothing was sent: this request fails, others go on
        assert self.row is not None
        if self.row.status == ExecutionStatus.SUCCEEDED:
            return Recorded(await self._view(pool, self.row))
        if not self._running:
            await self._write(
                self.retry_delays,
                self.executions.mark_running,
                self.execution_id,
                flow_run_id=self.flow_run_id,
            )
        return await self._recorded(pool, await self._call(pool, relay))

    async def run_on_the_line(
        self,
        pool: Pool,
        answer: Callable[[DelegationResult | Exception], Awaitable[None]],
        *,
        relay: EventRelay | None = None,
        start_after: float = ON_THE_LINE_START_AFTER,
    ) -> Recorded:
        """:meth:`run` for a caller waiting on the line (the drop-in endpoint), whose time is the
        point: the call goes out at once, ``answer`` hears the outcome before it is recorded (and
        returns once the caller has it), and
        a call that ends within ``start_after`` seconds is written once, finished, instead of
        started and then finished (a longer one is written running first, so that a crash
        mid-call leaves its trace). The row is ``execution_id``, known before any of it. Not for
        a request with an idempotency key: nothing looks for its earlier execution first."""
        if self.request.idempotency_key:
            raise ValueError(
                "a request with an idempotency key runs with run(), which finds its earlier execution"
            )
        # A timer rather than a second task to race the call against: the call starts in this task
        # at once, one turn of the event loop sooner.
        starting: list[asyncio.Task[None]] = []
        timer = asyncio.get_running_loop().call_later(
            start_after, lambda: starting.append(asyncio.ensure_future(self._start_quietly()))
        )
        try:
            outcome = await self._call(pool, relay)
        finally:
            timer.cancel()
            if starting:  # the row is being written running: the outcome goes onto it
                await asyncio.shield(starting[0])
        await answer(outcome)  # returns once the answer is on its way: the recording does not delay it
        return await self._recorded(pool, outcome)

    async def _start_quietly(self) -> None:
        try:
            await self.start(running=True)
        except (
            StorageError
        ) as exc:  # the call is under way: its outcome is recorded all the same, if it can be
            log_event(logger, logging.ERROR, "an execution could not be started", error=str(exc)[:300])

    async def _recorded(self, pool: Pool, outcome: DelegationResult | Exception) -> Recorded:
        """Write the outcome: onto the started row, or (a short call on the line) as one finished row."""
        started = self.row is not None
        if isinstance(outcome, Exception):
            row = await (self._record_failure(outcome) if started else self._add_finished(outcome))
            recorded = Recorded(await self._view(pool, row), outcome)
        else:
            row = await (self._record_success(outcome) if started else self._add_finished(outcome))
            recorded = Recorded(ExecutionView.of(row, account_name=outcome.account_name), result=outcome)
        await self._note(recorded.execution)
        return recorded

    async def _add_finished(self, outcome: DelegationResult | Exception) -> OrchestratorExecution:
        row = self._row_as_started()
        if isinstance(outcome, Exception):
            apply_failure(row, ExecutionFailure.of(outcome), attempts=self._attempts)
        else:
            apply_success(row, outcome)
        await self._write_quietly(self.executions.add_finished, row)
        return row

    async def _call(self, pool: Pool, relay: EventRelay | None) -> DelegationResult | Exception:
        lease = pool.config.capacity.lease_timeout_seconds
        trail = AttemptTrail.of(pool)
        self._attempts = trail.follow(self.request)
        try:
            async with self.executions.kept_alive(self.execution_id, lease_seconds=lease):
                with execution_scope(self.execution_id):  # the pool's events name this execution
                    return await pool.delegate(self.request, relay=relay)
        except asyncio.CancelledError:
            # Shutting down mid-call: say so in the row rather than leave it running.
            await self._record_cancelled()
            raise
        except self.retried_by_caller:
            raise
        except Exception as exc:  # recorded as the execution's failure, returned to the caller
            if not isinstance(exc, ClaudePoolError):
                logger.error("execution %s failed unexpectedly", self.execution_id, exc_info=exc)
            return exc
        finally:
            trail.forget(self.request)

    async def _record_success(self, result: DelegationResult) -> OrchestratorExecution:
        row = await self._write_quietly(self.executions.succeed, self.execution_id, result)
        if row is None:  # the database never took it: the result stands, described all the same
            row = self._row_as_started()
            apply_success(row, result)
        return row

    async def _record_failure(self, error: Exception) -> OrchestratorExecution:
        row = await self._write_quietly(self._fail, self.execution_id, error)
        if row is None:
            row = self._row_as_started()
            apply_failure(row, ExecutionFailure.of(error), attempts=self._attempts)
        return row

    def _row_as_started(self) -> OrchestratorExecution:
        """The row as it was started, or as it would have been where the database never took it."""
        if self.row is not None:
            return self.row
        return new_execution(self.request, execution_id=self.execution_id, flow_run_id=self.flow_run_id)

    def _fail(self, execution_id: str, error: Exception) -> OrchestratorExecution:
        # Each account's answer, not only the last: the record says why every one failed.
        return self.executions.fail(execution_id, error, attempts=self._attempts)

    async def _record_cancelled(self) -> None:
        try:
            await asyncio.shield(
                asyncio.to_thread(
                    self.executions.fail, self.execution_id, CANCELLED, status=ExecutionStatus.CANCELLED
                )
            )
        except StorageError as exc:  # the reaper will end the row as crashed instead
            log_event(
                logger,
                logging.WARNING,
                "a cancelled execution could not be recorded",
                execution_id=self.execution_id,
                error=str(exc)[:300],
            )

    def _unstarted(self, error: StorageError) -> Recorded:
        row = new_execution(self.request, flow_run_id=self.flow_run_id)
        apply_failure(row, ExecutionFailure(type(error).__name__, str(error)[:500]))
        return Recorded(replace(ExecutionView.of(row), execution_id=None), error)

    async def _view(self, pool: Pool, row: OrchestratorExecution) -> ExecutionView:
        return ExecutionView.of(row, account_name=await account_name(pool.directory, row.account_id))

    async def _note(self, execution: ExecutionView) -> None:
        if self.notifier is None or not self.notifier.enabled:
            return
        note = note_execution(self.notifier, execution)
        if self.spawn is None:
            await note
        else:
            self.spawn(note, name=f"slack-note-{self.execution_id}")

    async def _write(self, delays: Sequence[float], write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``write`` on a worker thread, tried again after each of ``delays`` while the database is
        unreachable."""
        for delay in (*delays, None):
            try:
                return await asyncio.to_thread(write, *args, **kwargs)
            except StorageError as exc:
                if delay is None:
                    raise
                log_event(
                    logger,
                    logging.WARNING,
                    "recording an execution failed; trying again",
                    step=write.__name__,
                    retry_in_s=delay,
                    error=str(exc)[:300],
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _write_quietly(self, write: Callable[..., T], *args: Any) -> T | None:
        """Record an outcome; when the database stays away past every retry, log it rather than
        fail the caller (a batch's other outcomes would be lost with it)."""
        try:
            return await self._write(self.retry_delays, write, *args)
        except StorageError as exc:
            log_event(
                logger,
                logging.ERROR,
                "an execution outcome could not be recorded",
                step=write.__name__,
                execution_id=self.execution_id,
                error=str(exc)[:300],
            )
            return None


async def record_delegation(
    pool: Pool,
    executions: ExecutionStore,
    request: DelegationRequest,
    *,
    flow_run_id: str | None = None,
    execution_id: str | None = None,
    notifier: SlackNotifier | None = None,
) -> Recorded:
    """Start, delegate and record ``request`` in one go (see :class:`RecordedDelegation`). Never
    raises for the request's own failure, nor for a database that stays away: both are in the
    result."""
    recorded = RecordedDelegation(
        executions, request, flow_run_id=flow_run_id, execution_id=execution_id, notifier=notifier
    )
    return await recorded.run(pool)
