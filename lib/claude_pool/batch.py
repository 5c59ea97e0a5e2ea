"""Many delegations through one pool with bounded concurrency, each recorded as an execution.

The Prefect batch flow runs chunks of requests through this function (one task per chunk, never
one per request), and the benchmark runs it directly: the same code on both sides of the
comparison.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from claude_pool.delegation import DelegationRequest
from claude_pool.errors import ClaudePoolError
from claude_pool.executions import ExecutionStore
from claude_pool.pool import Pool

__all__ = ["BatchItemOutcome", "run_batch"]


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
) -> list[BatchItemOutcome]:
    """Run ``requests`` with at most ``concurrency`` in flight; outcomes in request order.

    ``max_wait_seconds`` gives each request without a deadline of its own one that starts when the
    request does: a batch larger than the pool's minute waits for capacity instead of failing.

    A request that fails is recorded and reported, never allowed to stop the others. Executions
    are written on worker threads, so a slow database slows recording, not the event loop.
    """
    semaphore = asyncio.Semaphore(max(1, concurrency))

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
        row, created = await asyncio.to_thread(
            executions.start, request, flow_run_id=flow_run_id, running=True
        )
        execution_id = row.id
        if not created and row.status == "succeeded":
            return BatchItemOutcome(index, execution_id, "succeeded", row.account_id, row.attempts)
    try:
        result = await pool.delegate(request)
    except ClaudePoolError as exc:
        if executions is not None and execution_id is not None:
            await asyncio.to_thread(executions.fail, execution_id, exc)
        return BatchItemOutcome(
            index, execution_id, "failed", error_type=type(exc).__name__, error=str(exc)[:500]
        )
    if executions is not None and execution_id is not None:
        await asyncio.to_thread(executions.succeed, execution_id, result)
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
