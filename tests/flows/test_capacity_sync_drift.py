"""capacity-sync with an admin key, under Prefect's test harness: a second client spending from a
pooled key raises the usage-drift alert (in Slack once, at once) and its Prefect event; an admin key
that fails leaves the run completed, its table published with the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import anthropic
import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.types._datetime import now

from claude_pool.simulator import OutputSpec, Scenario
from claude_pool_flows import capacity_sync, delegate

from .conftest import FlowWorld
from .test_prefect_events import _about, _events_until

# One Anthropic organization with two keys, both pooled; the admin key is that organization's.
SCENARIO = Scenario.uniform(
    accounts=1,
    keys_per_org=2,
    rpm=10_000,
    itpm=10_000_000,
    otpm=1_000_000,
    output=OutputSpec(mode="fixed", tokens=20),
)
ALERTS = "#eng-alerts"


def _spend_outside_the_pool(world: FlowWorld, name: str) -> None:
    """Another client holding the pooled key calls Anthropic with it directly."""
    key = world.sim.key(name)
    client = anthropic.Anthropic(api_key=key.key, base_url=world.sim.base_url, max_retries=0)
    try:
        for n in range(3):
            client.messages.create(
                model="claude-sonnet-5-5",
                max_tokens=100,
                messages=[{"role": "user", "content": f"not through the pool {n} " + "x" * 4_000}],
            )
    finally:
        client.close()


async def _capacity_table(flow_run_id: UUID) -> Any:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    [table] = [a for a in found if a.key == "pool-capacity"]
    return table


def _drift_rows(world: FlowWorld) -> list[tuple[str, str]]:
    with world.runtime.db.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT account_id, phase FROM account_alerts WHERE kind = 'usage_drift'")
        )
        return [(str(a), str(p)) for a, p in rows]


@pytest.fixture
def drift_world(make_flow_world: Callable[..., FlowWorld], monkeypatch: pytest.MonkeyPatch) -> FlowWorld:
    world = make_flow_world(SCENARIO)
    monkeypatch.setenv("ANTHROPIC_ADMIN_API_KEY", world.sim.orgs[0].admin_key)
    return world


async def test_a_second_client_on_a_pooled_key_raises_the_drift_alert_once_and_its_event(
    drift_world: FlowWorld,
) -> None:
    world = drift_world
    for i in range(2):  # the pool's own traffic, on both keys
        await delegate(organization_id="tenant-a", message=f"m{i}", max_tokens=20, strategy="round_robin")
    quiet = await capacity_sync()
    assert (
        quiet["usage_report_keys"] is not None
        and quiet["usage_drift"] == []
        and quiet["usage_warning"] is None
    )
    assert _drift_rows(world) == [] and world.slack.messages_in(ALERTS) == []

    _spend_outside_the_pool(world, "acct-1b")
    since = now("UTC")
    state = await capacity_sync(return_state=True)
    synced = await state.result()
    assert synced["usage_drift"] == ["acct-1b"]
    acct = world.account_ids["acct-1b"]
    assert _drift_rows(world) == [(acct, "incident")]
    [alert] = world.slack.messages_in(ALERTS)  # sent by the same run, not the next quota sweep
    assert (
        alert.text is not None
        and "Usage drift: acct-1b" in alert.text
        and "more than the pool sent" in alert.text
    )
    table = await _capacity_table(state.state_details.flow_run_id)
    assert "Usage drift on acct-1b" in (table.description or "")

    events = await _events_until({"claude-pool.account.usage-drift"}, since)
    [event] = events["claude-pool.account.usage-drift"]
    assert _about(event, acct) and event.resource.get("prefect.resource.name") == "acct-1b"
    assert event.payload["excess_tokens"] > event.payload["tolerance_tokens"]

    await capacity_sync()  # the same drift seen again: nothing more
    assert len(world.slack.messages_in(ALERTS)) == 1 and len(_drift_rows(world)) == 1


async def test_a_failing_admin_key_still_publishes_the_table_and_says_why(
    drift_world: FlowWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_ADMIN_API_KEY", "sk-ant-admin01-" + "w" * 86 + "AA")
    _spend_outside_the_pool(drift_world, "acct-1")
    state = await capacity_sync(return_state=True)
    assert state.is_completed()
    synced = await state.result()
    assert synced["accounts"] == 2 and synced["usage_report_keys"] is None and synced["usage_drift"] == []
    assert "answered 401 (check ANTHROPIC_ADMIN_API_KEY)" in synced["usage_warning"]
    table = await _capacity_table(state.state_details.flow_run_id)
    assert len(table.data) > 0
    assert "Usage drift not checked" in (table.description or "") and "401" in (table.description or "")
    assert _drift_rows(drift_world) == []
