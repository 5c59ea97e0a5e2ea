"""``delegate_batch``: many requests through the pool, in chunks, with progress and a summary."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from claude_pool.records.requests import batch_requests
from claude_pool.storage import utcnow
from claude_pool_flows.forms import DEFAULT_MODEL
from claude_pool_tasks.batch import delegate_chunk
from claude_pool_tasks.batch_run import BatchRun
from claude_pool_tasks.summary import summarize_batch

__all__ = ["delegate_batch"]


@flow(name="delegate-batch", timeout_seconds=24 * 3600)
async def delegate_batch(
    requests: list[dict[str, Any]] | None = None,
    jsonl_path: str | None = None,
    organization_id: str = "default",
    model: str = DEFAULT_MODEL,
    max_tokens: int = 1024,
    concurrency: int = 16,
    chunk_size: int = 250,
    parallel_chunks: int = 2,
    max_wait_seconds: float | None = 300.0,
) -> dict[str, Any]:
    """Run every request through the pool with at most ``concurrency`` calls in flight.

    Requests go to Prefect tasks in chunks (``chunk_size`` each, ``parallel_chunks`` at once), each
    chunk driving many concurrent calls through the library, so Prefect's per-task cost stays out
    of the per-request path; the chunks share one set of ``concurrency`` slots, so no slot idles
    at a chunk's end. A request that finds every account busy waits up to
    ``max_wait_seconds`` for capacity. Returns the summary (also published as an artifact, with
    each failed request's execution).

    Args:
        requests: The requests, each an object with message (or messages) and optionally model,
            max_tokens, user_id, system, strategy, idempotency_key. Give this or jsonl_path.
        jsonl_path: A JSON Lines file on the worker, one request object a line. Give this or requests.
        organization_id: The organization of requests that name none.
        model: The Claude model of requests that name none.
        max_tokens: The most tokens each answer may hold, for requests that say nothing.
        concurrency: At most this many calls in flight at once.
        chunk_size: Requests per Prefect task.
        parallel_chunks: Chunks run at the same time.
        max_wait_seconds: How long a request waits for a free account; empty: fail at once.
    """
    run_id = flow_run.get_id() or f"local-{time.time_ns()}"
    defaults = {"organization_id": organization_id, "max_tokens": max_tokens, "model": model or None}
    items = batch_requests(requests, jsonl_path, defaults, f"batch-{run_id}")
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), max(1, chunk_size))]
    gate = asyncio.Semaphore(max(1, min(parallel_chunks, len(chunks))))
    since, started = utcnow(), time.monotonic()

    async def run_chunk(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        async with gate:
            outcomes: list[dict[str, Any]] = await delegate_chunk(chunk, concurrency, run_id, max_wait_seconds)
            return outcomes

    async with BatchRun(run_id, len(items), concurrency=concurrency):
        results = await asyncio.gather(*(run_chunk(c) for c in chunks))
    outcomes = [o for chunk in results for o in chunk]
    summary: dict[str, Any] = await summarize_batch(outcomes, since, time.monotonic() - started)
    return summary
