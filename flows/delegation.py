"""``delegate``: one request through the pool, recorded as one ``orchestrator_executions`` row."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from claude_pool.pool.models import DelegationRequest
from claude_pool.storage import new_id
from claude_pool_tasks.delegation import (
    DelegationFailed,
    call_claude,
    record_failure,
    record_success,
    request_json,
    start_execution,
)
from claude_pool_tasks.notify import notify_activity

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
    fields: dict[str, Any] = {
        "organization_id": organization_id,
        "message": message,
        "messages": messages or (),
        "max_tokens": max_tokens,
        "user_id": user_id,
        "system": system,
        "strategy": strategy,
        "idempotency_key": idempotency_key,
        "deadline": time.time() + deadline_seconds if deadline_seconds else None,
    }
    if model:
        fields["model"] = model
    request = request_json(
        DelegationRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    )
    # Chosen here, so that the task's retries all start the same row (see ExecutionStore.start).
    started = start_execution(request, flow_run.get_id(), new_id())
    execution: dict[str, Any] = started["execution"]
    if execution["status"] in ("succeeded", "failed", "crashed", "cancelled"):
        return execution  # the same idempotency key ran before: never call twice
    outcome = await call_claude(execution["execution_id"], request)
    if outcome["ok"] and "result" in outcome:
        execution = record_success(execution["execution_id"], outcome["result"])
    elif not outcome["ok"]:
        execution = record_failure(execution["execution_id"], outcome["error_type"], outcome["error"])
    await notify_activity(execution)
    if execution["status"] != "succeeded":
        raise DelegationFailed(
            execution["execution_id"], execution["error_type"] or "Error", execution["error_message"] or ""
        )
    return execution
