"""A chunk of a batch: many requests through one pool in one task run.

One task per chunk, never one per request: a task run costs about 10 ms of client CPU, more
than the pool's own work for a request.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from claude_pool.pool.models import DelegationRequest
from claude_pool.records.batch import run_batch
from claude_pool.records.executions import ExecutionStore
from claude_pool_tasks.batch_run import batch_run_for, pool_for
from claude_pool_tasks.context import retry_on_infrastructure, runtime

__all__ = ["OUTCOME_OMITS", "delegate_chunk"]

#: What a chunk leaves out of each execution it returns: the summary needs none of it, and a large
#: batch's answers would otherwise all be held by the flow at once.
OUTCOME_OMITS = ("text", "attempt_details")


@task(retries=1, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
async def delegate_chunk(
    requests: list[dict[str, Any]],
    concurrency: int,
    flow_run_id: str | None,
    max_wait_seconds: float | None = None,
) -> list[dict[str, Any]]:
    """Run a chunk with bounded concurrency; each request is recorded as an execution, so a retried
    chunk skips what already succeeded (by idempotency key) instead of sending it again."""
    batch = batch_run_for(flow_run_id)
    async with pool_for(batch) as pool:
        outcomes = await run_batch(
            pool,
            [DelegationRequest.model_validate(r) for r in requests],
            concurrency=concurrency,
            executions=ExecutionStore(runtime().db),
            flow_run_id=flow_run_id,
            max_wait_seconds=max_wait_seconds,
            on_done=batch.advance if batch is not None else None,
            slots=batch.slots if batch is not None else None,
        )
    return [o.as_dict(exclude=OUTCOME_OMITS) for o in outcomes]
