"""``delegate_batch``: many requests through the pool, in chunks, with progress and a summary."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from claude_pool.core.errors import InvalidInput
from claude_pool.pool.models import DelegationRequest
from claude_pool.storage import utcnow
from claude_pool_tasks.batch import delegate_chunk
from claude_pool_tasks.batch_run import BatchRun
from claude_pool_tasks.summary import summarize_batch

__all__ = ["delegate_batch", "load_requests"]


def load_requests(
    requests: list[dict[str, Any]] | None, jsonl_path: str | None, defaults: dict[str, Any], batch_id: str
) -> list[dict[str, Any]]:
    """Validated requests, each with an idempotency key so a retried chunk never repeats a call."""
    if (requests is None) == (jsonl_path is None):
        raise InvalidInput(
            "requests", "give either requests (a list) or jsonl_path (a file)", "not both, not neither"
        )
    raw: list[Any] = list(requests or [])
    if jsonl_path is not None:
        path = Path(jsonl_path)
        if not path.exists():
            raise InvalidInput("jsonl_path", f"{path} does not exist")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    raw.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"jsonl_path line {n}", f"not valid JSON: {exc.msg}") from None
    validated = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidInput(f"requests[{i}]", "must be an object with message or messages")
        merged = {**defaults, **item}
        merged.setdefault("idempotency_key", f"{batch_id}-{i}")
        try:
            validated.append(json.loads(DelegationRequest.model_validate(merged).model_dump_json()))
        except ValueError as exc:
            raise InvalidInput(f"requests[{i}]", str(exc).splitlines()[-1].strip()) from None
    return validated


@flow(name="delegate-batch")
async def delegate_batch(
    requests: list[dict[str, Any]] | None = None,
    jsonl_path: str | None = None,
    organization_id: str = "default",
    model: str | None = None,
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
    ``max_wait_seconds`` for capacity. Returns the summary (also published as an artifact).
    """
    run_id = flow_run.get_id() or f"local-{time.time_ns()}"
    defaults: dict[str, Any] = {"organization_id": organization_id, "max_tokens": max_tokens}
    if model:
        defaults["model"] = model
    items = load_requests(requests, jsonl_path, defaults, f"batch-{run_id}")
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), max(1, chunk_size))]
    gate = asyncio.Semaphore(max(1, min(parallel_chunks, len(chunks))))
    since = utcnow()
    started = time.monotonic()

    async def run_chunk(n: int, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        async with gate:
            result: list[dict[str, Any]] = await delegate_chunk(
                chunk, concurrency, run_id, n * chunk_size, max_wait_seconds
            )
            return result

    async with BatchRun(run_id, len(items), concurrency=concurrency):
        results = await asyncio.gather(*(run_chunk(n, c) for n, c in enumerate(chunks)))
    outcomes = [o for chunk in results for o in chunk]
    summary: dict[str, Any] = await summarize_batch(outcomes, since, time.monotonic() - started)
    return summary
