"""What a ``delegate`` run shows in the Prefect UI, read back through the Prefect client: its name,
its artifact (the answer or the per-account reasons), its persisted result and its logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from claude_pool.core.config import Strategy
from claude_pool.simulator import FaultRule
from claude_pool_flows import delegate, delegate_batch

from .conftest import FlowWorld


async def _artifacts(flow_run_id: UUID) -> dict[str, Any]:
    """The run's artifacts by key (Prefect adds unkeyed ones of its own, e.g. for results)."""
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found if a.key}


async def test_a_delegate_run_is_named_by_who_asked_and_shows_the_answer_and_its_figures(
    make_flow_world: Callable[..., FlowWorld],
) -> None:
    world = make_flow_world()
    state = await delegate(
        organization_id="tenant-a", message="hello", max_tokens=40, user_id="u-1",
        idempotency_key="job-9", return_state=True,
    )
    execution = await state.result()
    assert execution["status"] == "succeeded"
    flow_run_id = state.state_details.flow_run_id
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
    assert run.name == "tenant-a · user u-1 · key job-9"
    # the result is persisted as plain JSON, read back from the result store
    assert (await run.state.result())["execution_id"] == execution["execution_id"]
    artifact = (await _artifacts(flow_run_id))["delegate-execution"]
    account = world.account(next(n for n, i in world.account_ids.items() if i == execution["account_id"]))
    for shown in (execution["text"], execution["execution_id"], account.name, "claude-sonnet-5-5", "$"):
        assert shown in artifact.data


async def test_a_failed_delegate_run_shows_each_accounts_reason(
    make_flow_world: Callable[..., FlowWorld],
) -> None:
    world = make_flow_world()
    world.sim.add_fault(FaultRule(kind="error", status=500))
    state = await delegate(
        organization_id="tenant-a", message="hello", max_tokens=20, strategy=Strategy.ROUND_ROBIN,
        return_state=True,
    )
    assert state.is_failed()
    artifact = (await _artifacts(state.state_details.flow_run_id))["delegate-execution"]
    assert "# Delegation failed" in artifact.data
    for name in ("acct-1", "acct-2"):
        assert f"| {name} | " in artifact.data
    assert "500" in artifact.data


async def test_a_batch_summary_links_each_failed_request_to_its_execution(
    make_flow_world: Callable[..., FlowWorld],
) -> None:
    make_flow_world()
    state = await delegate_batch(
        requests=[{"message": "fine"}, {"message": "bad model", "model": "gpt-4"}],
        organization_id="tenant-a", max_tokens=20, return_state=True,
    )
    summary = await state.result()
    assert summary["failed"] == 1
    [failed] = summary["failed_executions"]
    artifacts = await _artifacts(state.state_details.flow_run_id)
    assert {"delegate-batch-progress", "delegate-batch-summary"} <= set(artifacts)
    assert f"claude-pool executions show {failed['execution_id']}" in artifacts["delegate-batch-summary"].data


async def _log_lines(flow_run_id: UUID) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


async def test_the_runs_log_tells_the_account_selection_and_the_fail_over_with_their_context(
    make_flow_world: Callable[..., FlowWorld],
) -> None:
    world = make_flow_world()
    world.sim.add_fault(FaultRule(kind="error", status=500))  # every account fails: both are tried
    state = await delegate(
        organization_id="tenant-a", message="hello", max_tokens=20, strategy=Strategy.ROUND_ROBIN,
        return_state=True,
    )
    assert state.is_failed()
    lines = await _log_lines(state.state_details.flow_run_id)
    selections = [line for line in lines if line.startswith("account selection")]
    for name in ("acct-1", "acct-2"):
        assert any(f"account={name}" in s and "strategy=round_robin" in s for s in selections), lines
    assert any(line.startswith("attempt failed") and "status=500" in line for line in lines), lines
