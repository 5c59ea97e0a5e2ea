"""Many delegations through one pool with bounded concurrency, each recorded as an execution.

The Prefect batch flow runs chunks of requests through this function (one task per chunk, never
one per request), and the benchmark runs it directly: the same code on both sides of the
comparison.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.executions import ExecutionStore
from claude_pool.records.recorded import record_delegation
from claude_pool.records.view import ExecutionView

__all__ = ["run_batch"]


async def run_batch(
    pool: Pool,
    requests: Sequence[DelegationRequest],
    *,
    concurrency: int,
    executions: ExecutionStore,
    flow_run_id: str | None = None,
    max_wait_seconds: float | None = None,
    on_done: Callable[[ExecutionView], Awaitable[None] | None] | None = None,
    slots: asyncio.Semaphore | None = None,
) -> list[ExecutionView]:
    """Run ``requests`` with at most ``concurrency`` in flight; their executions in request order.

    ``max_wait_seconds`` gives each request without a deadline of its own one that starts when the
    request does, and as long a place in the queue: a batch larger than the pool's minute waits for
    capacity instead of failing (concurrency keeps its queue short: at most that many wait).

    A request that fails is recorded and reported, never allowed to stop the others. Executions
    are written on worker threads, so a slow database slows recording, not the event loop.
    ``slots`` bounds several concurrent calls of this function together (the chunks of one batch),
    so that the end of one chunk leaves no slot idle while another still has requests waiting.
    """
    semaphore = slots or asyncio.Semaphore(max(1, concurrency))

    async def one(request: DelegationRequest) -> ExecutionView:
        async with semaphore:
            if max_wait_seconds is not None and request.deadline is None:
                request = request.model_copy(update={"deadline": time.time() + max_wait_seconds})
            if max_wait_seconds is not None and request.max_queue_seconds is None:
                # A batch would rather wait its turn than be refused: the pool's adaptive bound
                # sheds a standing queue of interactive callers, not the batch's own requests.
                request = request.model_copy(update={"max_queue_seconds": max_wait_seconds})
            recorded = await record_delegation(pool, executions, request, flow_run_id=flow_run_id)
        if on_done is not None:
            maybe = on_done(recorded.execution)
            if maybe is not None:
                await maybe
        return recorded.execution

    return list(await asyncio.gather(*(one(r) for r in requests)))
