"""``delegate``: one request through the pool, recorded as one ``orchestrator_executions`` row."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from claude_pool.core.config import Strategy
from claude_pool.core.errors import DelegationFailed
from claude_pool.records.execution_report import delegation_run_name
from claude_pool.records.requests import delegation_request
from claude_pool.storage import ExecutionStatus, new_id
from claude_pool_flows.forms import DEFAULT_MODEL, ChatMessage, plain_messages
from claude_pool_tasks.delegation import call_claude, publish_execution, start_execution

__all__ = ["delegate", "delegate_run_name"]


def delegate_run_name() -> str:
    """The run's name in the UI: who asked (organization, user, idempotency key)."""
    given = flow_run.parameters
    return delegation_run_name(
        str(given.get("organization_id") or "-"),
        user_id=given.get("user_id"),
        idempotency_key=given.get("idempotency_key"),
    )


@flow(
    name="delegate",
    flow_run_name=delegate_run_name,
    log_prints=True,
    timeout_seconds=900,
    persist_result=True,
    result_serializer="json",
)
async def delegate(
    organization_id: str,
    message: str | None = None,
    messages: list[ChatMessage] | None = None,
    model: str = DEFAULT_MODEL,
    max_tokens: int = 1024,
    user_id: str | None = None,
    system: str | None = None,
    strategy: Strategy | None = None,
    deadline_seconds: float | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Send one request to Claude through the pool and record it in orchestrator_executions.

    The run's artifact shows the answer (or the error, with each account's reason), the account,
    attempts, tokens, latency, cost and execution id; a failed delegation fails the run.

    Args:
        organization_id: The organization whose accounts serve the request (e.g. "default").
        message: The question, as one user message. Give this or messages.
        messages: A conversation, oldest turn first, ending with the user's. Give this or message.
        model: The Claude model to ask.
        max_tokens: The most tokens the answer may hold (1 to 128000).
        user_id: Who asks, for the records and sticky selection; optional.
        system: A system prompt; optional.
        strategy: How to choose the account; empty means the configured selection strategy.
        deadline_seconds: Give up after this many seconds if no account is free; empty waits no time.
        idempotency_key: A key of your own: a second run with the same key returns the first result
            instead of asking again.
    """
    request = delegation_request(
        organization_id, message=message, messages=plain_messages(messages), model=model or None,
        max_tokens=max_tokens, user_id=user_id, system=system, strategy=strategy,
        idempotency_key=idempotency_key, timeout_seconds=deadline_seconds or None,
    ).model_dump(mode="json")
    run_id = flow_run.get_id()
    # The id is chosen here, so that every try of the start task starts the same row.
    execution: dict[str, Any] = await start_execution(request, run_id, new_id())
    if execution["status"] not in ExecutionStatus.TERMINAL:  # else: the same key ran before
        execution = await call_claude(execution["execution_id"], request, run_id)
    await publish_execution(execution)
    if execution["status"] != "succeeded":
        raise DelegationFailed(execution["execution_id"], execution["error_type"], execution["error_message"])
    return execution
