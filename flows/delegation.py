"""``delegate``: one request through the pool, recorded as one ``orchestrator_executions`` row."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from claude_pool.core.errors import DelegationFailed
from claude_pool.records.requests import delegation_request
from claude_pool.storage import ExecutionStatus, new_id
from claude_pool_tasks.delegation import call_claude, start_execution

__all__ = ["delegate"]


@flow(name="delegate", log_prints=True)
async def delegate(
    organization_id: str,
    message: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    model: str | None = None,
    max_tokens: int = 1024,
    user_id: str | None = None,
    system: str | None = None,
    strategy: str | None = None,
    deadline_seconds: float | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Send one request to Claude through the pool; returns the execution (status, account,
    tokens, latency, text). A failed delegation fails the run, with its row saying why."""
    request = delegation_request(
        organization_id,
        message=message,
        messages=messages or None,
        model=model or None,
        max_tokens=max_tokens,
        user_id=user_id,
        system=system,
        strategy=strategy,
        idempotency_key=idempotency_key,
        timeout_seconds=deadline_seconds or None,
    ).model_dump(mode="json")
    run_id = flow_run.get_id()
    # The id is chosen here, so that every try of the start task starts the same row.
    execution: dict[str, Any] = await start_execution(request, run_id, new_id())
    if execution["status"] in ExecutionStatus.TERMINAL:
        return execution  # the same idempotency key ran before: never call twice
    execution = await call_claude(execution["execution_id"], request, run_id)
    if execution["status"] != "succeeded":
        raise DelegationFailed(execution["execution_id"], execution["error_type"], execution["error_message"])
    return execution
