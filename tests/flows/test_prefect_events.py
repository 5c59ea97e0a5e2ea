"""What an operator automates on: breaker opened, credentials rejected, budget exhausted and quota
alerts as Prefect events named claude-pool.account.*, each about its account, read back from the
Prefect server through its client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.events.worker import EventsWorker
from prefect.types._datetime import now

from claude_pool.simulator import FaultRule, Scenario
from claude_pool_flows import delegate, quota_sweep

from .conftest import FlowWorld


async def _events_until(names: set[str], since: Any, timeout: float = 60) -> dict[str, list[Any]]:
    """Every claude-pool.account.* event since ``since``, by name, once all of ``names`` are stored
    (the server stores events a moment after they arrive)."""
    drained = EventsWorker.drain_all()
    if asyncio.iscoroutine(drained):
        await drained
    deadline = time.monotonic() + timeout
    found: dict[str, list[Any]] = {}
    async with get_client() as client:
        while time.monotonic() < deadline:
            page = await client.read_events(
                EventFilter(
                    occurred=EventOccurredFilter(since=since),
                    event=EventNameFilter(prefix=["claude-pool.account."]),
                ),
                limit=50,
            )
            found = {}
            for event in page.events:
                found.setdefault(event.event, []).append(event)
            if names <= set(found):
                return found
            await asyncio.sleep(0.5)  # polling the server's store, not synchronising with it
    raise AssertionError(f"events {sorted(names - set(found))} not seen in {timeout:.0f}s; saw {sorted(found)}")


def _about(event: Any, account_id: str) -> bool:
    related = [dict(r) for r in event.related if r.get("prefect.resource.role") == "account"]
    return event.resource.id == f"claude-pool.account.{account_id}" and [
        r["prefect.resource.id"] for r in related
    ] == [f"claude-pool.account.{account_id}"]


async def test_a_breaker_opening_a_revoked_key_and_a_spend_cap_each_emit_their_event(
    make_flow_world: Callable[..., FlowWorld], tmp_path: Path
) -> None:
    # the fixture's config path: a breaker that opens at the first failure
    (tmp_path / "no-config.json").write_text(json.dumps({"circuitBreaker": {"failureThreshold": 1}}))
    world = make_flow_world(Scenario.uniform(accounts=3, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    world.sim.revoke("acct-1")
    world.sim.add_fault(FaultRule(kind="spend_cap", targets=("acct-2",)))
    world.sim.add_fault(FaultRule(kind="error", status=500, targets=("acct-3",)))
    since = now("UTC")
    await delegate(organization_id="tenant-a", message="hello", max_tokens=20, return_state=True)
    wanted = {
        "claude-pool.account.credentials-rejected": "acct-1",
        "claude-pool.account.budget-exhausted": "acct-2",
        "claude-pool.account.breaker-opened": "acct-3",
    }
    events = await _events_until(set(wanted), since)
    for name, account in wanted.items():
        assert any(_about(e, world.account_ids[account]) for e in events[name]), (name, events[name])
        assert all(e.resource.get("prefect.resource.name") == account for e in events[name])
    # Prefect ties each to the run that caused it
    [opened] = events["claude-pool.account.breaker-opened"]
    assert any(r.get("prefect.resource.role") == "flow-run" for r in opened.related)


async def test_a_used_up_token_budget_raises_alert_and_budget_exhausted_events(
    make_flow_world: Callable[..., FlowWorld],
) -> None:
    world = make_flow_world()
    acct = world.account_ids["acct-1"]
    world.runtime.accounts.update(acct, {"daily_token_budget": 10})  # a budget one answer uses up
    since = now("UTC")
    for i in range(2):  # round robin: one answer on each account
        await delegate(organization_id="tenant-a", message=f"m{i}", max_tokens=20, strategy="round_robin")
    report = await quota_sweep()
    assert report["alerts_raised"] >= 1
    events = await _events_until(
        {"claude-pool.account.quota-alert-raised", "claude-pool.account.budget-exhausted"}, since
    )
    raised = events["claude-pool.account.quota-alert-raised"]
    assert len(raised) == report["alerts_raised"]
    assert all(_about(e, acct) and e.payload["metric"] == "daily_token_budget" for e in raised)
    [exhausted] = events["claude-pool.account.budget-exhausted"]
    assert _about(exhausted, acct) and exhausted.payload["threshold"] == 1.0
