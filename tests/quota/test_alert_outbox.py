"""The outbox against the Slack simulator: each alert sent once, none lost, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from claude_pool.quota import AlertOutbox, QuotaEvaluator, list_alerts
from claude_pool.quota.slack import HEADER_MAX, MAX_FIELDS, SECTION_TEXT_MAX, SlackNotifier
from claude_pool.simulator import RunningSlackSimulator
from claude_pool.storage import Database, QuotaAlert, utcnow

from .conftest import CANARY_KEY, OTHER_KEY, QuotaWorld, slack_settings


def _raise(world: QuotaWorld, *fractions: float) -> list[QuotaAlert]:
    observations = [
        world.observation(f, window=f"2026-11-26T09:{40 + i:02d}") for i, f in enumerate(fractions)
    ]
    return QuotaEvaluator(world.db, world.config).evaluate(observations)


def _stored(db: Database) -> list[QuotaAlert]:
    return [r.alert for r in list_alerts(db)]


def _assert_clean(text: str) -> None:
    for secret in (CANARY_KEY, OTHER_KEY, "CANARYinName", "CANARYquota", "CANARYother"):
        assert secret not in text


async def test_two_concurrent_sweeps_send_each_alert_exactly_once(
    world: QuotaWorld, slack_sim_factory: object
) -> None:
    sim: RunningSlackSimulator = slack_sim_factory(rate_per_channel=100, burst=100)  # type: ignore[operator]
    alerts = _raise(world, 1.0, 0.97)  # 3 + 2 alerts
    assert len(alerts) == 5
    async with SlackNotifier(slack_settings(sim)) as notifier:
        one, two = AlertOutbox(world.db, notifier), AlertOutbox(Database(world.db.url), notifier)
        try:
            reports = await asyncio.gather(one.send_unsent(), two.send_unsent(), one.send_unsent())
        finally:
            two.db.dispose()
    assert sum(r.sent for r in reports) == 5
    messages = sim.messages_in("#eng-alerts")
    assert len(messages) == 5
    assert len({m.ts for m in messages}) == 5
    stored = _stored(world.db)
    assert all(a.sent_at is not None and a.slack_ts and a.send_attempts == 1 for a in stored)
    assert {a.slack_ts for a in stored} == {m.ts for m in messages}
    assert {a.slack_channel for a in stored} == {"#eng-alerts"}
    # A later sweep finds nothing to send.
    async with SlackNotifier(slack_settings(sim)) as notifier:
        assert (await AlertOutbox(world.db, notifier).send_unsent()).sent == 0
    assert len(sim.messages) == 5


async def test_slack_down_keeps_the_alert_then_the_next_sweep_sends_it_once(
    world: QuotaWorld, slack_sim: RunningSlackSimulator
) -> None:
    _raise(world, 0.85)
    async with SlackNotifier(slack_settings(slack_sim)) as notifier:
        outbox = AlertOutbox(world.db, notifier)
        for mode, attempts in (("503", 1), ("reset", 2)):
            slack_sim.set_outage(mode)
            report = await outbox.send_unsent()
            assert (report.sent, report.failed) == (0, 1)
            [alert] = _stored(world.db)
            assert alert.sent_at is None and alert.send_attempts == attempts
            assert alert.last_error and alert.claimed_until is None
        slack_sim.set_outage(None)
        assert (await outbox.send_unsent()).sent == 1
        assert (await outbox.send_unsent()).sent == 0
    [alert] = _stored(world.db)
    assert alert.sent_at is not None and alert.send_attempts == 3 and alert.last_error is None
    assert len(slack_sim.messages) == 1


async def test_a_sweep_stops_at_the_first_outage_and_leaves_the_rest_untouched(
    world: QuotaWorld, slack_sim: RunningSlackSimulator
) -> None:
    _raise(world, 1.0)
    slack_sim.set_outage("503")
    async with SlackNotifier(slack_settings(slack_sim)) as notifier:
        report = await AlertOutbox(world.db, notifier).send_unsent()
    assert (report.failed, report.pending) == (1, 2)
    assert sorted(a.send_attempts for a in _stored(world.db)) == [0, 0, 1]


async def test_a_burst_under_slack_rate_limits_is_sent_exactly_once_each(
    world: QuotaWorld, slack_sim_factory: object
) -> None:
    sim: RunningSlackSimulator = slack_sim_factory(rate_per_channel=1, burst=1)  # type: ignore[operator]
    _raise(world, 1.0, 0.97)  # 5 alerts, Slack takes one per second
    started = time.monotonic()
    async with SlackNotifier(slack_settings(sim), max_wait=5.0, max_retries=5) as notifier:
        outboxes = [AlertOutbox(world.db, notifier) for _ in range(2)]
        for _ in range(5):
            await asyncio.gather(*(o.send_unsent() for o in outboxes))
            if not list_alerts(world.db, unsent=True):
                break
    assert time.monotonic() - started < 15
    assert sim.stats().get("ratelimited", 0) >= 1
    assert len(sim.messages) == 5
    assert all(a.sent_at is not None for a in _stored(world.db))
    assert len({m.ts for m in sim.messages}) == 5


async def test_without_a_token_alerts_are_stored_and_logged_not_sent(
    world: QuotaWorld, slack_sim: RunningSlackSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="claude_pool.quota")
    alerts = _raise(world, 0.97)
    notifier = SlackNotifier(slack_settings(None, slack_base_url=slack_sim.base_url))
    assert not notifier.enabled
    report = await AlertOutbox(world.db, notifier).send_unsent()
    await notifier.aclose()
    assert (report.enabled, report.sent, report.pending) == (False, 0, 2)
    assert slack_sim.stats().get("received", 0) == 0
    assert [a.sent_at for a in _stored(world.db)] == [None, None]
    alert_lines = [r for r in caplog.records if r.getMessage().startswith("quota alert:")]
    assert len(alert_lines) == len(alerts) == 2


async def test_a_refused_message_is_recorded_redacted_and_kept(
    world: QuotaWorld, slack_sim: RunningSlackSimulator
) -> None:
    _raise(world, 0.85)
    slack_sim.revoke(slack_sim.token)
    async with SlackNotifier(slack_settings(slack_sim)) as notifier:
        report = await AlertOutbox(world.db, notifier).send_unsent()
    assert report.errors == ["token_revoked"]
    [alert] = _stored(world.db)
    assert alert.sent_at is None and alert.send_attempts == 1 and "token_revoked" in (alert.last_error or "")


async def test_an_expired_claim_is_taken_over_and_a_live_one_is_respected(
    world: QuotaWorld, slack_sim: RunningSlackSimulator
) -> None:
    [alert] = _raise(world, 0.85)
    table = QuotaAlert.__table__  # type: ignore[attr-defined]
    with world.db.engine.begin() as conn:
        conn.execute(
            sa.update(table)
            .where(table.c.id == alert.id)
            .values(claimed_by="crashed-worker", claimed_until=utcnow() + timedelta(minutes=5))
        )
    async with SlackNotifier(slack_settings(slack_sim)) as notifier:
        report = await AlertOutbox(world.db, notifier).send_unsent()
        assert report.sent == 0 and len(slack_sim.messages) == 0
        with world.db.engine.begin() as conn:
            conn.execute(
                sa.update(table)
                .where(table.c.id == alert.id)
                .values(claimed_until=utcnow() - timedelta(seconds=1))
            )
        assert (await AlertOutbox(world.db, notifier).send_unsent()).sent == 1
    assert len(slack_sim.messages) == 1


async def test_messages_respect_block_kit_limits_and_carry_no_key(
    world: QuotaWorld, slack_sim_factory: object
) -> None:
    sim: RunningSlackSimulator = slack_sim_factory(rate_per_channel=100, burst=100)  # type: ignore[operator]
    world.accounts.update(
        world.primary.id, {"name": "x" * 30 + " sk-ant-api03-CANARYinName12345 " + "y" * 36}
    )
    evaluator = QuotaEvaluator(world.db, world.config)
    evaluator.evaluate([world.observation(1.0)])
    evaluator.evaluate([world.observation(0.1, window="2026-11-26T09:42")])  # recovery
    async with SlackNotifier(slack_settings(sim)) as notifier:
        assert (await AlertOutbox(world.db, notifier).send_unsent()).sent == 4
    messages = sim.messages
    assert len(messages) == 4
    for m in messages:
        assert m.text and m.text.startswith("[claude-pool]")
        assert m.blocks
        header = [b for b in m.blocks if b["type"] == "header"]
        assert len(header) == 1 and len(header[0]["text"]["text"]) <= HEADER_MAX
        for block in m.blocks:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= SECTION_TEXT_MAX
                assert len(block.get("fields", [])) <= MAX_FIELDS
        _assert_clean(json.dumps({"text": m.text, "blocks": m.blocks, "args": m.args}))
        assert "sk-ant-…2345" in m.text
    kinds = sorted(m.text.split(":")[0] for m in messages)
    assert kinds == ["[claude-pool] quota alert"] * 3 + ["[claude-pool] recovered"]
    # The stored rows and their errors are clean too.
    _assert_clean(json.dumps([a.model_dump(mode="json") for a in _stored(world.db)]))
