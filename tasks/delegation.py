"""The steps of one delegation: record the start, call Claude, record the outcome, tell Slack."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from claude_pool.core.errors import ClaudePoolError
from claude_pool.pool.models import DelegationRequest, DelegationResult
from claude_pool.records.executions import ExecutionStore
from claude_pool.storage import ExecutionStatus, OrchestratorExecution
from claude_pool_tasks.context import INFRASTRUCTURE_ERRORS, open_pool, retry_on_infrastructure, runtime

__all__ = [
    "DelegationFailed",
    "call_claude",
    "execution_summary",
    "record_failure",
    "record_success",
    "start_execution",
]


class DelegationFailed(ClaudePoolError):
    """A delegation ended without a result; the execution row says why."""

    def __init__(self, execution_id: str, error_type: str, message: str) -> None:
        self.execution_id = execution_id
        self.error_type = error_type
        super().__init__(f"execution {execution_id} failed: {error_type}: {message}")


def execution_summary(row: OrchestratorExecution) -> dict[str, Any]:
    """What a flow returns: plain values, no key, no client."""
    return {
        "execution_id": row.id,
        "status": row.status,
        "organization_id": row.organization_id,
        "user_id": row.user_id,
        "account_id": row.account_id,
        "attempts": row.attempts,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "latency_ms": row.latency_ms,
        "text": row.response_text,
        "error_type": row.error_type,
        "error_message": row.error_message,
        "flow_run_id": row.flow_run_id,
        "model": row.model,
    }


@task(
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=retry_on_infrastructure,
    cache_policy=NO_CACHE,
)
def start_execution(
    request: dict[str, Any], flow_run_id: str | None, execution_id: str | None = None
) -> dict[str, Any]:
    """Create the pending row, or find the one already made for this idempotency key (or by an
    earlier try of this task whose commit went through unacknowledged)."""
    store = ExecutionStore(runtime().db)
    row, created = store.start(
        DelegationRequest.model_validate(request), flow_run_id=flow_run_id, execution_id=execution_id
    )
    if created or row.status not in ExecutionStatus.TERMINAL:
        store.mark_running(row.id, flow_run_id=flow_run_id)
        row = store.get(row.id)
    return {"execution": execution_summary(row), "created": created}


def _call_cache_key(_context: Any, parameters: dict[str, Any]) -> str:
    # One call per execution: a retried flow run finds the result of a call that already succeeded
    # in the result store, and never sends the same request to Anthropic twice.
    return f"claude-pool-call-{parameters['execution_id']}"


@task(
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_on_infrastructure,
    cache_key_fn=_call_cache_key,
    persist_result=True,
)
async def call_claude(execution_id: str, request: dict[str, Any]) -> dict[str, Any]:
    """Select an account, reserve, call, settle, fail over: the whole pool loop, once."""
    rt = runtime()
    existing = await asyncio.to_thread(ExecutionStore(rt.db).get, execution_id)
    if existing.status == ExecutionStatus.SUCCEEDED:
        return {"ok": True, "already_recorded": True}
    lease = rt.config.capacity.lease_timeout_seconds
    async with open_pool() as pool, ExecutionStore(rt.db).kept_alive(execution_id, lease_seconds=lease):
        try:
            result = await pool.delegate(DelegationRequest.model_validate(request))
        except ClaudePoolError as exc:
            if isinstance(exc, INFRASTRUCTURE_ERRORS):
                raise
            return {"ok": False, "error_type": type(exc).__name__, "error": str(exc)}
    return {"ok": True, "result": result.model_dump(mode="json")}


@task(
    retries=5,
    retry_delay_seconds=[1, 2, 5, 10, 30],
    retry_condition_fn=retry_on_infrastructure,
    cache_policy=NO_CACHE,
)
def record_success(execution_id: str, result: dict[str, Any]) -> dict[str, Any]:
    store = ExecutionStore(runtime().db)
    row = store.succeed(execution_id, DelegationResult.model_validate(result))
    return execution_summary(row)


@task(
    retries=5,
    retry_delay_seconds=[1, 2, 5, 10, 30],
    retry_condition_fn=retry_on_infrastructure,
    cache_policy=NO_CACHE,
)
def record_failure(execution_id: str, error_type: str, message: str) -> dict[str, Any]:
    store = ExecutionStore(runtime().db)
    error = type(error_type, (Exception,), {})(message)
    row = store.fail(execution_id, error)
    return execution_summary(row)


def request_json(request: DelegationRequest) -> dict[str, Any]:
    plain: dict[str, Any] = json.loads(request.model_dump_json())
    return plain
