"""The steps of one delegation, each a retried Prefect task over the library's
``RecordedDelegation``: record the request, then call Claude and record how it ended (with the
activity note). Executions cross the task boundary as ``ExecutionView.as_dict()``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from claude_pool.pool.directory import AccountDirectory
from claude_pool.pool.models import DelegationRequest
from claude_pool.quota.slack import SlackNotifier
from claude_pool.records.execution_report import execution_cost_usd, execution_markdown
from claude_pool.records.executions import ExecutionStore
from claude_pool.records.names import account_names
from claude_pool.records.recorded import RecordedDelegation
from claude_pool_tasks.context import INFRASTRUCTURE_ERRORS, open_pool, retry_on_infrastructure, runtime

__all__ = ["CALL_CACHE_EXPIRATION", "call_claude", "publish_execution", "start_execution"]

#: How long a succeeded call is kept in the result store for a retried flow run to find: long enough
#: for any retry, short enough that answers do not pile up on the worker's disk.
CALL_CACHE_EXPIRATION = timedelta(days=1)


def _recorded(
    request: dict[str, Any], execution_id: str, flow_run_id: str | None, notifier: SlackNotifier | None
) -> RecordedDelegation:
    return RecordedDelegation(
        ExecutionStore(runtime().db),
        DelegationRequest.model_validate(request),
        execution_id=execution_id,
        flow_run_id=flow_run_id,
        notifier=notifier,
        # Prefect retries these (retry_on_infrastructure): the library leaves the row to that try.
        retried_by_caller=INFRASTRUCTURE_ERRORS,
    )


@task(
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=retry_on_infrastructure,
    cache_policy=NO_CACHE,
)
async def start_execution(request: dict[str, Any], flow_run_id: str | None, execution_id: str) -> dict[str, Any]:
    """Create the pending row, or find the one already made for this idempotency key (or by an
    earlier try of this task whose commit went through unacknowledged)."""
    # One write per try: the task's own retries wait out a database that is away.
    execution = await _recorded(request, execution_id, flow_run_id, None).start(patient=False)
    return execution.as_dict()


def _call_cache_key(_context: Any, parameters: dict[str, Any]) -> str:
    # One call per execution: a retried flow run finds the result of a call that already succeeded
    # in the result store, and never sends the same request to Anthropic twice.
    return f"claude-pool-call-{parameters['execution_id']}"


@task(
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_on_infrastructure,
    cache_key_fn=_call_cache_key,
    cache_expiration=CALL_CACHE_EXPIRATION,
    persist_result=True,
)
async def call_claude(execution_id: str, request: dict[str, Any], flow_run_id: str | None) -> dict[str, Any]:
    """Select an account, reserve, call, settle, fail over: the whole pool loop, once, recorded
    (an execution that succeeded already is returned as it is)."""
    async with SlackNotifier(runtime().settings) as notifier, open_pool() as pool:
        recorded = await _recorded(request, execution_id, flow_run_id, notifier).run(pool)
    return recorded.execution.as_dict()


@task(cache_policy=NO_CACHE)
async def publish_execution(execution: dict[str, Any]) -> None:
    """The run's answer (or its error, with each account's reason) and figures, as a markdown
    artifact on the flow run's page."""
    rt = runtime()
    names = await account_names(AccountDirectory(rt.db, rt.config))
    markdown = execution_markdown(execution, names=names, cost_usd=execution_cost_usd(rt.config, execution))
    await acreate_markdown_artifact(
        markdown, key="delegate-execution", description=f"execution {execution.get('execution_id')}"
    )
