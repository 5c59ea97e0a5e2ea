"""Slack down, then rate limiting, during a burst of alerts: three workers sweep the outbox
concurrently (as three quota-sweep runs would) and every alert is sent exactly once in the end."""

from __future__ import annotations

import asyncio
import os
import time

from claude_pool.accounts.registry import AccountService
from claude_pool.core.config import load_config
from claude_pool.core.crypto import KeyRing
from claude_pool.core.settings import Secret, Settings
from claude_pool.quota import AlertOutbox, QuotaEvaluator, list_alerts
from claude_pool.quota.slack import SlackNotifier
from claude_pool.simulator import RunningSlackSimulator
from claude_pool.storage import Database
from tests.quota.conftest import observation_of

ACCOUNTS = 8  # x 3 thresholds (80/95/100 %) = 24 alerts in one burst
SWEEPERS = 3


def _burst(db: Database) -> int:
    config = load_config(None, env={})
    accounts = AccountService(db, KeyRing(os.urandom(32)), config)
    observations = []
    for n in range(ACCOUNTS):
        key = f"sk-ant-api03-slackburst{n:02d}" + "x" * 60 + "AA"
        account = accounts.register(
            {"organization_id": "org-a", "name": f"team-{n}", "tier": "pro", "api_key": key}
        )
        observations.append(observation_of(account, 1.0))
    return len(QuotaEvaluator(db, config).evaluate(observations))


async def test_a_burst_of_alerts_through_a_slack_outage_then_rate_limits_is_sent_exactly_once_each(
    db: Database, slack_sim_factory: object
) -> None:
    try:
        raised = _burst(db)
        assert raised == ACCOUNTS * 3
        slack: RunningSlackSimulator = slack_sim_factory(rate_per_channel=4, burst=4)  # type: ignore[operator]
        settings = Settings(log_file=None, slack_bot_token=Secret(slack.token), slack_base_url=slack.base_url)
        sweeps = 0
        started = time.monotonic()
        async with SlackNotifier(settings, max_wait=2.0, max_retries=2) as notifier:
            outboxes = [AlertOutbox(db, notifier) for _ in range(SWEEPERS)]
            # down in two ways, a sweep round each: connections dropped, then 503s
            for mode in ("reset", "503"):
                slack.set_outage(mode)
                reports = await asyncio.gather(*(o.send_unsent() for o in outboxes))
                sweeps += 1
                assert sum(r.sent for r in reports) == 0 and sum(r.failed for r in reports) >= 1
            # back, but at 4 messages a second per channel: 429s with retry-after until the burst drains
            slack.set_outage(None)
            while list_alerts(db, unsent=True) and sweeps < 40:
                await asyncio.gather(*(o.send_unsent() for o in outboxes))
                sweeps += 1
        elapsed = time.monotonic() - started
        stored = [row.alert for row in list_alerts(db)]
        messages = slack.messages_in("#eng-alerts")
        print(f"\n{raised} alerts, {sweeps} sweep rounds x {SWEEPERS}, {elapsed:.1f}s, slack {slack.stats()}")
        assert all(a.sent_at is not None and a.slack_ts for a in stored)
        assert len(messages) == raised  # each alert once: none lost, none twice
        assert sorted(a.slack_ts for a in stored) == sorted(m.ts for m in messages)
        assert all(a.send_attempts >= 1 for a in stored)
        assert slack.stats().get("ratelimited", 0) >= 1  # the rate limit was really met
    finally:
        db.dispose()
