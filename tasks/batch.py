"""A chunk of a batch: many requests through one pool in one task run.

One task per chunk, never one per request: a task run costs about 10 ms of client CPU, more
than the pool's own work for a request.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from claude_pool.pool.models import DelegationRequest
from claude_pool.records.batch import BatchItemOutcome, run_batch
from claude_pool.records.executions import ExecutionStore
from claude_pool_tasks.batch_run import batch_run_for
from claude_pool_tasks.context import open_pool, retry_on_infrastructure, runtime

__all__ = ["delegate_chunk"]


@task(retries=1, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
async def delegate_chunk(
    requests: list[dict[str, Any]],
    concurrency: int,
    flow_run_id: str | None,
    first_index: int,
    max_wait_seconds: float | None = None,
) -> list[dict[str, Any]]:
    """Run a chunk with bounded concurrency; each request is recorded as an execution, so a retried
    chunk skips what already succeeded (by idempotency key) instead of sending it again."""
    batch = batch_run_for(flow_run_id)

    async def done(outcome: BatchItemOutcome) -> None:
        if batch is not None:
            await batch.advance(failed=outcome.status != "succeeded")

    async with contextlib.AsyncExitStack() as stack:
        # The batch's shared pool when this chunk runs in its flow's process, else one of its own.
        pool = (
            batch.pool
            if batch is not None and batch.pool is not None
            else await stack.enter_async_context(open_pool())
        )
        outcomes = await run_batch(
            pool,
            [DelegationRequest.model_validate(r) for r in requests],
            concurrency=concurrency,
            executions=ExecutionStore(runtime().db),
            flow_run_id=flow_run_id,
            first_index=first_index,
            max_wait_seconds=max_wait_seconds,
            on_done=done,
            slots=batch.slots if batch is not None else None,
        )
    return [asdict(o) for o in outcomes]
