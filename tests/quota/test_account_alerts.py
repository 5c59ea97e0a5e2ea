"""Account alerts against the Anthropic and Slack simulators: a breaker that opens, a revoked key, an
exhausted budget and a disabled account each post one alert, their recoveries one note each; a
flapping account posts a digest; a Slack outage loses none."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, timedelta

import pytest

from claude_pool.core.config import load_config
from claude_pool.core.errors import ClaudePoolError
from claude_pool.events import open_publishing_pool
from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.quota import AlertOutbox, SendReport
from claude_pool.quota.account_alerts import (
    KIND_BREAKER_OPEN,
    KIND_CREDENTIALS_REJECTED,
    KIND_DISABLED,
    AccountAlerts,
)
from claude_pool.quota.account_listener import AccountAlertListener
from claude_pool.quota.slack import HEADER_MAX, SECTION_TEXT_MAX, SlackNotifier
from claude_pool.simulator import FaultRule, RunningSimulator, RunningSlackSimulator, SlackMessage
from claude_pool.storage import AccountAlert, AccountStatus
from tests.plugins.runtimes import SimulatedRuntime

from .conftest import slack_settings

REQ = DelegationRequest(
    organization_id="tenant-a", message="Say hello", max_tokens=16, strategy="round_robin"
)
CHANNEL = "#eng-alerts"


@dataclass
class AlertWorld:
    built: SimulatedRuntime
    slack: RunningSlackSimulator
    pool: Pool

    @property
    def sim(self) -> RunningSimulator:
        return self.built.sim

    @property
    def alerts(self) -> AccountAlerts:
        return AccountAlerts(self.built.runtime.db)

    def account(self, name: str) -> str:
        return self.built.account_ids[name]

    async def sweep(self) -> SendReport:
        async with SlackNotifier(slack_settings(self.slack), max_wait=5.0) as notifier:
            return await AlertOutbox(self.built.runtime.db, notifier).send_unsent()

    def posted(self) -> list[SlackMessage]:
        return self.slack.messages_in(CHANNEL)

    def rows(self) -> list[AccountAlert]:
        from sqlmodel import select

        with self.built.runtime.db.session() as session:
            return list(session.exec(select(AccountAlert).order_by(AccountAlert.id)))  # type: ignore[arg-type]

    async def delegate_until(self, done: Callable[[], bool], attempts: int = 30) -> None:
        for _ in range(attempts):
            if done():
                return
            with contextlib.suppress(ClaudePoolError):
                await self.pool.delegate(REQ)
        assert done(), "the expected state was never reached"


@pytest.fixture
async def world(
    simulated_runtime_factory: Callable[..., SimulatedRuntime],
    slack_sim_factory: Callable[..., RunningSlackSimulator],
) -> AsyncIterator[AlertWorld]:
    config = load_config(None, env={"CLAUDE_POOL__circuitBreaker__failureThreshold": "2"})
    built = simulated_runtime_factory(config=config)
    slack = slack_sim_factory(rate_per_channel=100, burst=100)
    listener = AccountAlertListener(built.runtime.db)
    # Wired as the HTTP server and the Prefect tasks wire it.
    pool = open_publishing_pool(built.runtime, None, listeners=[listener], breaker_listeners=[listener])
    async with pool:
        yield AlertWorld(built, slack, pool)


def _assert_fit_for_slack(world: AlertWorld) -> None:
    for message in world.posted():
        blob = json.dumps([message.text, message.blocks])
        for key in world.built.api_keys:
            assert key not in blob and key[14:-4] not in blob
        assert message.text and message.blocks
        header, section = message.blocks
        assert len(header["text"]["text"]) <= HEADER_MAX
        assert len(section["text"]["text"]) <= SECTION_TEXT_MAX


async def test_a_breaker_opening_posts_one_alert_and_closing_one_note(world: AlertWorld) -> None:
    acct = world.account("acct-1")
    world.sim.add_fault(FaultRule(kind="error", status=503, targets=("acct-1",)))

    def opened() -> bool:
        return any(r.kind == KIND_BREAKER_OPEN for r in world.rows())

    await world.delegate_until(opened)
    for _ in range(4):  # more traffic while it is open: no more alerts
        await world.pool.delegate(REQ)
    assert (await world.sweep()).sent == 1
    assert (await world.sweep()).sent == 0
    [alert] = world.posted()
    assert alert.text is not None and "Circuit breaker opened" in alert.text
    assert "2 consecutive failures" in alert.text and "HTTP 503" in alert.text
    assert "Until" in json.dumps(alert.blocks)

    world.sim.clear_faults()
    await world.pool.breaker.reset(acct)
    assert (await world.sweep()).sent == 1
    note = world.posted()[-1]
    assert note.text is not None and "Circuit breaker closed" in note.text
    assert len(world.posted()) == 2
    _assert_fit_for_slack(world)


async def test_a_revoked_key_posts_one_alert_however_often_it_is_refused(world: AlertWorld) -> None:
    acct = world.account("acct-2")
    world.sim.revoke("acct-2")
    await world.delegate_until(
        lambda: world.built.runtime.accounts.get(acct).status == AccountStatus.INVALID_CREDENTIALS
    )
    # Another worker reports the same rejection, and a sweep reconciles from the stored status.
    assert world.alerts.incident(acct, KIND_CREDENTIALS_REJECTED, "401 again") is None
    assert world.alerts.reconcile() == []
    assert (await world.sweep()).sent == 1
    [alert] = world.posted()
    assert alert.text is not None and "Credentials rejected" in alert.text and "rotate-key" in alert.text

    world.sim.restore("acct-2")
    world.built.runtime.accounts.enable(acct)
    assert [(r.kind, r.phase) for r in world.alerts.reconcile()] == [(KIND_CREDENTIALS_REJECTED, "recovery")]
    assert (await world.sweep()).sent == 1
    assert world.posted()[-1].text is not None and "Credentials accepted again" in (
        world.posted()[-1].text or ""
    )
    assert len(world.posted()) == 2
    _assert_fit_for_slack(world)


async def test_an_exhausted_budget_posts_one_alert_and_one_note_when_the_cap_resets(
    world: AlertWorld,
) -> None:
    acct = world.account("acct-3")
    world.sim.add_fault(FaultRule(kind="spend_cap", targets=("acct-3",)))
    await world.delegate_until(
        lambda: world.built.runtime.accounts.get(acct).status == AccountStatus.SPEND_EXHAUSTED
    )
    assert world.alerts.reconcile() == []
    assert (await world.sweep()).sent == 1
    [alert] = world.posted()
    assert alert.text is not None and "Budget exhausted" in alert.text and "Until" in json.dumps(alert.blocks)

    until = world.built.runtime.accounts.get(acct).status_until
    assert until is not None
    after_reset = AccountAlerts(world.built.runtime.db, clock=lambda: until + timedelta(seconds=1))
    assert len(after_reset.reconcile()) == 1
    assert after_reset.reconcile() == []
    assert (await world.sweep()).sent == 1
    assert "Budget available again" in (world.posted()[-1].text or "")


async def test_disabling_and_enabling_an_account_post_one_message_each(world: AlertWorld) -> None:
    acct = world.account("acct-1")
    world.built.runtime.accounts.disable(acct, reason="key leaked in a ticket")
    assert [(r.kind, r.phase) for r in world.alerts.reconcile()] == [(KIND_DISABLED, "incident")]
    assert world.alerts.reconcile() == []
    world.built.runtime.accounts.enable(acct)
    assert [(r.kind, r.phase) for r in world.alerts.reconcile()] == [(KIND_DISABLED, "recovery")]
    assert (await world.sweep()).sent == 2
    texts = [m.text or "" for m in world.posted()]
    assert "Account disabled" in texts[0] and "key leaked in a ticket" in texts[0]
    assert "Account re-enabled" in texts[1]


async def test_a_flapping_breaker_posts_a_digest_not_twenty_messages(world: AlertWorld) -> None:
    acct = world.account("acct-1")
    for n in range(10):  # open and close ten times within a minute
        await world.pool.breaker.force_open(acct, f"flap {n}", seconds=30)
        await world.pool.breaker.reset(acct)
    assert (await world.sweep()).sent == 3
    opened, closed, digest = (m.text or "" for m in world.posted())
    assert "Circuit breaker opened" in opened and "Circuit breaker closed" in closed
    assert "Flapping" in digest
    assert "opened 9 time(s) and closed 9 time(s)" in digest
    # It keeps flapping after the digest went out: the next sweep sends one more digest, not ten.
    for n in range(5):
        await world.pool.breaker.force_open(acct, f"again {n}", seconds=30)
        await world.pool.breaker.reset(acct)
    assert (await world.sweep()).sent == 1
    assert "opened 5 time(s) and closed 5 time(s)" in (world.posted()[-1].text or "")
    _assert_fit_for_slack(world)


async def test_a_slack_outage_loses_no_account_alert(world: AlertWorld) -> None:
    world.slack.set_outage("503")
    await world.pool.breaker.force_open(world.account("acct-1"), "operator drill", seconds=60)
    world.built.runtime.accounts.disable(world.account("acct-2"))
    world.alerts.reconcile()
    down = await world.sweep()
    assert down.sent == 0 and down.failed == 1 and down.pending == 1
    assert all(r.sent_at is None for r in world.rows())
    assert [r.send_attempts for r in world.rows()] == [1, 0]
    world.slack.set_outage(None)
    assert (await world.sweep()).sent == 2
    assert (await world.sweep()).sent == 0
    assert len(world.posted()) == 2
    assert {r.slack_ts for r in world.rows()} == {m.ts for m in world.posted()}


# -- the rule itself, on SQLite and PostgreSQL -----------------------------------------------------


def _registered(db: object, config: object) -> str:
    from claude_pool.accounts.registry import AccountService
    from claude_pool.core.crypto import KeyRing

    service = AccountService(db, KeyRing(os.urandom(32)), config)  # type: ignore[arg-type]
    key = "sk-ant-api03-" + os.urandom(30).hex()
    return service.register({"organization_id": "org-a", "name": "a", "tier": "pro", "api_key": key}).id


def test_incidents_once_recoveries_only_when_open_and_a_digest_while_flapping(db: object, config: object) -> None:
    from datetime import datetime

    account = _registered(db, config)
    now = [datetime(2026, 12, 3, 9, 0, tzinfo=UTC)]
    alerts = AccountAlerts(db, clock=lambda: now[0], flap_window=timedelta(minutes=10))  # type: ignore[arg-type]

    assert alerts.recovery(account, KIND_BREAKER_OPEN) is None  # nothing open: nothing to recover
    first = alerts.incident(account, KIND_BREAKER_OPEN, "5 consecutive failures")
    assert first is not None and (first.phase, first.sequence) == ("incident", 1)
    assert alerts.incident(account, KIND_BREAKER_OPEN, "seen by another worker") is None
    assert alerts.incident("no-such-account", KIND_BREAKER_OPEN) is None
    closed = alerts.recovery(account, KIND_BREAKER_OPEN)
    assert closed is not None and (closed.phase, closed.sequence) == ("recovery", 1)

    now[0] += timedelta(minutes=1)  # within the window: flapping
    phases = [alerts.incident(account, KIND_BREAKER_OPEN), alerts.recovery(account, KIND_BREAKER_OPEN)]
    digest = phases[-1]
    assert digest is not None and digest.phase == "digest"
    assert (digest.openings, digest.recoveries) == (1, 1)
    assert len({p.id for p in phases if p is not None}) == 1  # one row, counted twice

    now[0] += timedelta(minutes=11)  # calm again: an incident is its own message
    again = alerts.incident(account, KIND_BREAKER_OPEN)
    assert again is not None and (again.phase, again.sequence) == ("incident", 2)
    # Another kind of trouble of the same account is an incident of its own.
    disabled = alerts.incident(account, KIND_DISABLED, "by an operator")
    assert disabled is not None and disabled.phase == "incident"
    with pytest.raises(ValueError, match="unknown account alert kind"):
        alerts.incident(account, "on_fire")


def test_a_status_flapping_within_the_window_is_counted_once_per_change(db: object, config: object) -> None:
    from datetime import datetime

    from claude_pool.accounts.registry import AccountService
    from claude_pool.core.crypto import KeyRing

    account = _registered(db, config)
    service = AccountService(db, KeyRing(os.urandom(32)), config)  # type: ignore[arg-type]
    now = [datetime(2026, 12, 3, 9, 0, tzinfo=UTC)]
    alerts = AccountAlerts(db, clock=lambda: now[0])  # type: ignore[arg-type]

    def sweep() -> list[tuple[str, str, int, int]]:
        now[0] += timedelta(minutes=1)
        return [(r.kind, r.phase, r.openings, r.recoveries) for r in alerts.reconcile()]

    service.disable(account)
    assert sweep() == [(KIND_DISABLED, "incident", 1, 0)]
    service.enable(account)
    assert sweep() == [(KIND_DISABLED, "recovery", 0, 1)]
    service.disable(account)
    assert sweep() == [(KIND_DISABLED, "digest", 1, 0)]
    # Still disabled: later sweeps, within the window or long after it, add nothing.
    assert sweep() == []
    now[0] += timedelta(hours=1)
    assert sweep() == []
    service.enable(account)
    assert sweep() == [(KIND_DISABLED, "digest", 1, 1)]
    assert sweep() == []
