"""The flows as users run them (Python API), under Prefect's test harness."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from claude_pool.simulator import FaultRule, Scenario
from claude_pool.storage import AccountStatus
from claude_pool_flows import capacity_sync, delegate, delegate_batch, health_check, quota_sweep

from .conftest import FlowWorld


def _rows(world: FlowWorld, sql: str, **params: object) -> list[sa.Row]:
    with world.runtime.db.engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params))


async def test_delegate_records_one_execution_notifies_slack_and_logs_the_selection(
    make_flow_world: Callable[..., FlowWorld], tmp_path: Path
) -> None:
    world = make_flow_world()
    result = await delegate(organization_id="tenant-a", message="hello", max_tokens=40, user_id="u-1")
    assert result["status"] == "succeeded" and result["text"]
    rows = _rows(
        world,
        "SELECT status, account_id, attempts, input_tokens, output_tokens, latency_ms, flow_run_id "
        "FROM orchestrator_executions",
    )
    assert len(rows) == 1
    status, account_id, attempts, tin, tout, latency, flow_run_id = rows[0]
    assert (status, attempts) == ("succeeded", 1)
    assert account_id in world.account_ids.values() and tin > 0 and tout > 0 and latency > 0 and flow_run_id
    notes = world.slack.messages_in("#it-test")
    assert len(notes) == 1 and "succeeded" in notes[0].text
    assert "account selection" in (tmp_path / "app.log").read_text()


async def test_the_same_idempotency_key_never_calls_twice(make_flow_world: Callable[..., FlowWorld]) -> None:
    world = make_flow_world()
    first = await delegate(
        organization_id="tenant-a", message="hello", max_tokens=40, idempotency_key="job-7"
    )
    second = await delegate(
        organization_id="tenant-a", message="hello", max_tokens=40, idempotency_key="job-7"
    )
    assert first["execution_id"] == second["execution_id"]
    assert world.sim.stats().total["received"] == 1


async def test_a_5xx_fails_over_within_the_flow(make_flow_world: Callable[..., FlowWorld]) -> None:
    world = make_flow_world()
    world.sim.add_fault(FaultRule(kind="error", status=500, targets=("acct-1",)))
    results = [
        await delegate(organization_id="tenant-a", message=f"m{i}", max_tokens=20, strategy="round_robin")
        for i in range(2)
    ]
    assert all(r["status"] == "succeeded" and r["account_id"] == world.account_ids["acct-2"] for r in results)
    assert max(r["attempts"] for r in results) == 2


async def test_a_429_cools_the_account_down(make_flow_world: Callable[..., FlowWorld]) -> None:
    world = make_flow_world()
    world.sim.add_fault(FaultRule(kind="ramp", targets=("acct-1",), retry_after=30))
    for i in range(3):
        result = await delegate(
            organization_id="tenant-a", message=f"m{i}", max_tokens=20, strategy="round_robin"
        )
        assert result["account_id"] == world.account_ids["acct-2"]
    assert world.sim.stats().key("acct-1")["received"] == 1


async def test_a_revoked_key_and_a_spend_cap_set_the_accounts_aside(
    make_flow_world: Callable[..., FlowWorld],
) -> None:
    world = make_flow_world(Scenario.uniform(accounts=3, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    world.sim.revoke("acct-1")
    world.sim.add_fault(FaultRule(kind="spend_cap", targets=("acct-2",)))
    for i in range(3):
        result = await delegate(
            organization_id="tenant-a", message=f"m{i}", max_tokens=20, strategy="round_robin"
        )
        assert result["account_id"] == world.account_ids["acct-3"]
    assert world.account("acct-1").status == AccountStatus.INVALID_CREDENTIALS
    assert world.account("acct-2").status == AccountStatus.SPEND_EXHAUSTED


async def test_a_failed_delegation_fails_the_run_and_its_row_says_why(
    make_flow_world: Callable[..., FlowWorld],
) -> None:
    world = make_flow_world()
    with pytest.raises(Exception, match="failed"):
        await delegate(organization_id="tenant-a", message="hello", max_tokens=20, model="gpt-4")
    rows = _rows(world, "SELECT status, error_type FROM orchestrator_executions")
    assert rows == [("failed", "CallerRequestError")]


def _tight_scenario() -> Scenario:
    # 10 requests per minute, refilled at one every 6 s
    return Scenario.uniform(accounts=1, rpm=10, itpm=1_000_000, otpm=100_000, round_tokens_to=1)


async def _use_the_whole_minute() -> None:
    """Ten requests in one batch run: the account's whole minute, used within a second or two, so
    the sweep right after sees at least 80 % used however slow this machine is (one flow run per
    request took long enough under load for the bucket to refill below the threshold)."""
    summary = await delegate_batch(
        requests=[{"message": f"m{i}"} for i in range(10)],
        organization_id="tenant-a",
        max_tokens=5,
        concurrency=10,
        max_wait_seconds=None,
    )
    assert summary["succeeded"] == 10


async def test_two_concurrent_sweeps_send_each_alert_once(make_flow_world: Callable[..., FlowWorld]) -> None:
    world = make_flow_world(_tight_scenario())
    await _use_the_whole_minute()
    reports = await asyncio.gather(quota_sweep(), quota_sweep())
    alerts = _rows(
        world, "SELECT metric, threshold, \"window\", sent_at FROM quota_alerts WHERE kind = 'threshold'"
    )
    assert 0.8 in {a[1] for a in alerts if a[0] == "requests_per_minute"}
    # once per (metric, threshold, window): two sweeps either side of a minute boundary may each
    # see their own minute, never the same one twice
    assert len({a[:3] for a in alerts}) == len(alerts)
    assert all(a[3] is not None for a in alerts)
    sent = world.slack.messages_in("#eng-alerts")
    assert len(sent) == len(alerts) and sum(r["sent"] for r in reports) == len(alerts)


async def test_an_alert_is_kept_while_slack_is_down_and_sent_later(
    make_flow_world: Callable[..., FlowWorld],
) -> None:
    world = make_flow_world(_tight_scenario())
    await _use_the_whole_minute()
    world.slack.set_outage("503")
    down = await quota_sweep()
    assert down["alerts_raised"] >= 1 and down["sent"] == 0
    unsent = _rows(
        world, "SELECT id, send_attempts, last_error FROM quota_alerts WHERE sent_at IS NULL ORDER BY id"
    )
    assert len(unsent) == down["alerts_raised"]
    # the first refusal is recorded on its row; the sweep then stops and leaves the rest for later
    assert unsent[0][1] == 1 and unsent[0][2]
    world.slack.set_outage(None)
    up = await quota_sweep()
    assert up["sent"] == len(unsent)
    assert _rows(world, "SELECT count(*) FROM quota_alerts WHERE sent_at IS NULL")[0][0] == 0
    assert len(world.slack.messages_in("#eng-alerts")) == len(unsent)


async def test_batch_capacity_sync_and_health_check(make_flow_world: Callable[..., FlowWorld]) -> None:
    world = make_flow_world()
    summary = await delegate_batch(
        requests=[{"message": f"question {i}"} for i in range(40)],
        organization_id="tenant-a",
        max_tokens=30,
        concurrency=8,
        chunk_size=15,
    )
    assert summary["succeeded"] == 40 and sum(a["requests"] for a in summary["per_account"].values()) == 40
    assert _rows(world, "SELECT count(*) FROM orchestrator_executions WHERE status = 'succeeded'")[0][0] == 40
    synced = await capacity_sync()
    assert synced["accounts"] == 2
    assert _rows(world, "SELECT count(*) FROM capacity_snapshots")[0][0] == 2
    world.sim.revoke("acct-2")
    probes = await health_check()
    by_name = {p["account_name"]: p for p in probes}
    assert by_name["acct-1"]["ok"] and not by_name["acct-2"]["ok"]
    assert world.account("acct-2").status == AccountStatus.INVALID_CREDENTIALS
