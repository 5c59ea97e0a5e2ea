"""SlackNotifier with the real async slack_sdk client against the Slack simulator."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import pytest

from claude_pool.core.errors import NotificationError
from claude_pool.quota.slack import (
    HEADER_MAX,
    MAX_FIELDS,
    SECTION_TEXT_MAX,
    DelegationNote,
    SlackNotifier,
    alert_blocks,
    alert_text,
)
from claude_pool.simulator import RunningSlackSimulator, SlackConfig
from claude_pool.storage import QuotaAlert

from .conftest import CANARY_KEY, slack_settings


def _alert(**changes: object) -> QuotaAlert:
    values: dict[str, object] = {
        "id": 1,
        "account_id": "acc-1",
        "organization_id": "org-a",
        "metric": "requests_per_minute",
        "threshold": 0.95,
        "kind": "threshold",
        "window": "2026-11-26T09:41",
        "observed": 970.0,
        "limit": 1000.0,
        "fraction": 0.97,
        "created_at": datetime(2026, 11, 26, tzinfo=UTC),
    }
    values.update(changes)
    return QuotaAlert(**values)  # type: ignore[arg-type]


async def test_post_returns_the_ts_and_redacts_text_and_blocks(
    notifier: SlackNotifier, slack_sim: RunningSlackSimulator
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"key {CANARY_KEY}"}}]
    ts = await notifier.post("#general", f"oops {CANARY_KEY}", blocks)
    [message] = slack_sim.messages
    assert message.ts == ts and message.channel_ref == "#general"
    assert CANARY_KEY not in str(message.text) + str(message.blocks)
    assert "sk-ant-…Qx7z" in str(message.text)


async def test_alert_and_activity_go_to_their_channels(
    notifier: SlackNotifier, slack_sim_factory: object
) -> None:
    sim: RunningSlackSimulator = slack_sim_factory(rate_per_channel=50, burst=50)  # type: ignore[operator]
    async with SlackNotifier(
        slack_settings(sim, slack_alert_channel="#alerts-x", slack_activity_channel="#act")
    ) as n:
        await n.post_alert(_alert(), account_name="team-a")
        await n.post_delegation_activity(
            organization_id="org-a",
            user_id="u1",
            account_name="team-a",
            status="succeeded",
            input_tokens=1200,
            output_tokens=80,
            latency_ms=843.2,
            model="claude-x",
        )
        assert (await n.auth_test())["ok"] is True
    assert [m.text for m in sim.messages_in("#alerts-x")] == [alert_text(_alert(), account_name="team-a")]
    [note] = sim.messages_in("#act")
    assert note.text is not None and "1,200 in / 80 out" in note.text and "843 ms" in note.text
    assert note.blocks and len(note.blocks[0]["fields"]) <= MAX_FIELDS


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (SlackConfig(channels={"general": "C0GENERAL"}), "channel_not_found"),
        (SlackConfig(member_of=("general",)), "not_in_channel"),
    ],
)
async def test_refusals_raise_at_once(slack_sim_factory: object, config: SlackConfig, expected: str) -> None:
    sim: RunningSlackSimulator = slack_sim_factory(config)  # type: ignore[operator]
    async with SlackNotifier(slack_settings(sim)) as n:
        with pytest.raises(NotificationError) as info:
            await n.post("#eng-alerts", "hello")
    assert info.value.error == expected
    assert sim.stats()["received"] == 1


async def test_bad_and_revoked_tokens(slack_sim: RunningSlackSimulator) -> None:
    from claude_pool.core.settings import Secret

    async with SlackNotifier(slack_settings(slack_sim, slack_bot_token=Secret("xoxb-wrong"))) as n:
        with pytest.raises(NotificationError) as info:
            await n.post("#x", "hello")
        assert info.value.error == "invalid_auth"
        with pytest.raises(NotificationError):
            await n.auth_test()
    slack_sim.revoke(slack_sim.token)
    async with SlackNotifier(slack_settings(slack_sim)) as n:
        with pytest.raises(NotificationError) as info:
            await n.post("#x", "hello")
    assert info.value.error == "token_revoked"


async def test_429_is_waited_out_within_bounds(slack_sim_factory: object) -> None:
    sim: RunningSlackSimulator = slack_sim_factory(rate_per_channel=1, burst=1)  # type: ignore[operator]
    async with SlackNotifier(slack_settings(sim)) as n:
        await n.post("#c", "one")
        started = time.monotonic()
        await n.post("#c", "two", max_wait=5)  # waits Retry-After (1 s) once
        assert 0.9 <= time.monotonic() - started < 5
        with pytest.raises(NotificationError) as info:
            await n.post("#c", "three", max_wait=0.5)  # the wait asked for is beyond what we accept
        assert info.value.error == "ratelimited" and info.value.retry_after == 1
        with pytest.raises(NotificationError):
            await n.post("#c", "four", max_retries=0)
    assert [m.text for m in sim.messages] == ["one", "two"]


async def test_connection_errors_and_outages_raise_notification_errors(
    slack_sim: RunningSlackSimulator,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    async with SlackNotifier(
        slack_settings(slack_sim, slack_base_url=f"http://127.0.0.1:{closed_port}/api/")
    ) as n:
        with pytest.raises(NotificationError) as info:
            await n.post("#x", "hello")
    assert info.value.error == "connection_error"
    async with SlackNotifier(slack_settings(slack_sim)) as n:
        slack_sim.set_outage("503")
        with pytest.raises(NotificationError) as info:
            await n.post("#x", "hello")
        assert info.value.error == "fatal_error"
        slack_sim.set_outage("reset")
        with pytest.raises(NotificationError) as info:
            await n.post("#x", "hello")
        assert info.value.error == "connection_error"


async def test_disabled_without_a_token() -> None:
    async with SlackNotifier(slack_settings(None)) as n:
        assert not n.enabled
        assert await n.post_activity("hello") is None
        with pytest.raises(NotificationError) as info:
            await n.post_alert(_alert())
        assert info.value.error == "not_configured"
        with pytest.raises(NotificationError):
            await n.auth_test()
    assert "Secret" not in repr(n) and "xoxb" not in repr(n)


def test_block_kit_limits_hold_for_extreme_values() -> None:
    long = "n" * 500 + f" {CANARY_KEY} <!here> & more"
    for alert in (_alert(), _alert(kind="recovery", threshold=0.8), _alert(threshold=1.0, window="w" * 32)):
        blocks = alert_blocks(alert, account_name=long)
        text = alert_text(alert, account_name=long)
        assert text and CANARY_KEY not in text
        assert len(blocks[0]["text"]["text"]) <= HEADER_MAX and blocks[0]["type"] == "header"
        section = blocks[1]
        assert len(section["text"]["text"]) <= SECTION_TEXT_MAX
        assert len(section["fields"]) <= MAX_FIELDS
        rendered = str(blocks)
        assert CANARY_KEY not in rendered and "<!here>" not in rendered
    activity = DelegationNote(
        organization_id="o" * 5000, user_id=None, account_name=long, status="failed"
    ).blocks()
    assert all(len(f["text"]) <= 2000 for f in activity[0]["fields"])
    assert CANARY_KEY not in str(activity)


def test_spend_alerts_speak_dollars_and_token_alerts_counts() -> None:
    spend = _alert(metric="monthly_spend_budget_usd", window="2026-11", observed=41_234.5, limit=50_000.0,
                   fraction=0.82469, threshold=0.8)
    assert "($41,234.50/$50,000.00, 82%)" in alert_text(spend, account_name="team-a")
    assert "$41,234.50 / $50,000.00 (82.5%)" in str(alert_blocks(spend, account_name="team-a"))
    assert "(970/1,000, 97%)" in alert_text(_alert(), account_name="team-a")
