"""Many delegations through one pool with bounded concurrency, each recorded as an execution.

The Prefect batch flow runs chunks of requests through this function (one task per chunk, never
one per request), and the benchmark runs it directly: the same code on both sides of the
comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from claude_pool.core.errors import ClaudePoolError, StorageError
from claude_pool.core.logs import log_event
from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.executions import ExecutionStore
from claude_pool.storage import new_id

__all__ = ["BatchItemOutcome", "run_batch"]

logger = logging.getLogger("claude_pool.batch")
T = TypeVar("T")

#: Back-off between attempts to write an execution while the database is unreachable (about a
#: minute in all): a result already paid for upstream is worth waiting for, and every write is
#: idempotent (``succeed`` keeps the first success, ``start`` finds the row by idempotency key).
RECORD_RETRY_DELAYS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


@dataclass(frozen=True)
class BatchItemOutcome:
    index: int
    execution_id: str | None
    status: str
    account_id: str | None = None
    attempts: int = 0
    failovers: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    error_type: str | None = None
    error: str | None = None


async def run_batch(
    pool: Pool,
    requests: Sequence[DelegationRequest],
    *,
    concurrency: int,
    executions: ExecutionStore | None = None,
    flow_run_id: str | None = None,
    first_index: int = 0,
    max_wait_seconds: float | None = None,
    on_done: Callable[[BatchItemOutcome], Awaitable[None] | None] | None = None,
    slots: asyncio.Semaphore | None = None,
) -> list[BatchItemOutcome]:
    """Run ``requests`` with at most ``concurrency`` in flight; outcomes in request order.

    ``max_wait_seconds`` gives each request without a deadline of its own one that starts when the
    request does: a batch larger than the pool's minute waits for capacity instead of failing.

    A request that fails is recorded and reported, never allowed to stop the others. Executions
    are written on worker threads, so a slow database slows recording, not the event loop.
    ``slots`` bounds several concurrent calls of this function together (the chunks of one batch),
    so that the end of one chunk leaves no slot idle while another still has requests waiting.
    """
    semaphore = slots or asyncio.Semaphore(max(1, concurrency))

    async def one(offset: int, request: DelegationRequest) -> BatchItemOutcome:
        async with semaphore:
            if max_wait_seconds is not None and request.deadline is None:
                request = request.model_copy(update={"deadline": time.time() + max_wait_seconds})
            outcome = await _delegate_one(pool, request, first_index + offset, executions, flow_run_id)
        if on_done is not None:
            maybe = on_done(outcome)
            if maybe is not None:
                await maybe
        return outcome

    return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))


async def _delegate_one(
    pool: Pool,
    request: DelegationRequest,
    index: int,
    executions: ExecutionStore | None,
    flow_run_id: str | None,
) -> BatchItemOutcome:
    execution_id = None
    if executions is not None:
        try:
            # One id for every try: a retried start finds the row a lost acknowledgement hid.
            row, created = await _record(
                executions.start, request, flow_run_id=flow_run_id, running=True, execution_id=new_id()
            )
        except StorageError as exc:  # nothing was sent: the request fails, the batch goes on
            return BatchItemOutcome(
                index, None, "failed", error_type=type(exc).__name__, error=str(exc)[:500]
            )
        execution_id = row.id
        if not created and row.status == "succeeded":
            return BatchItemOutcome(index, execution_id, "succeeded", row.account_id, row.attempts)
    try:
        kept_alive = (
            executions.kept_alive(execution_id, lease_seconds=pool.config.capacity.lease_timeout_seconds)
            if executions is not None and execution_id is not None
            else contextlib.nullcontext()
        )
        async with kept_alive:
            result = await pool.delegate(request)
    except ClaudePoolError as exc:
        if executions is not None and execution_id is not None:
            await _record_quietly(executions.fail, execution_id, exc)
        return BatchItemOutcome(
            index, execution_id, "failed", error_type=type(exc).__name__, error=str(exc)[:500]
        )
    if executions is not None and execution_id is not None:
        await _record_quietly(executions.succeed, execution_id, result)
    return BatchItemOutcome(
        index,
        execution_id,
        "succeeded",
        account_id=result.account_id,
        attempts=len(result.attempts),
        failovers=len({a.account_id for a in result.attempts}) - 1,
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        latency_ms=result.latency_ms,
    )


async def _record(write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``write`` on a worker thread, tried again while the database is unreachable."""
    for delay in (*RECORD_RETRY_DELAYS, None):
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


async def _record_quietly(write: Callable[..., Any], *args: Any) -> None:
    """Record an outcome; when the database stays away past every retry, log it rather than
    fail the batch (the other requests' outcomes would be lost with it)."""
    try:
        await _record(write, *args)
    except StorageError as exc:
        log_event(
            logger,
            logging.ERROR,
            "an execution outcome could not be recorded",
            step=write.__name__,
            error=str(exc)[:300],
        )
