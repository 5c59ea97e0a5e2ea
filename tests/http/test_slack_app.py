"""Slack commands against the Slack simulator, which delivers signed events as Slack does: one
mention, one delegation and one threaded reply, however often Slack delivers it; a bad signature
or an old timestamp gets 401 and runs nothing; help and status answer in the thread."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from claude_pool.core.errors import SettingsError
from claude_pool.core.settings import Secret, Settings
from claude_pool.http.slack_app import EVENTS_PATH, HELP, SlackCommands
from claude_pool.simulator import SlackConfig, SlackMessage
from claude_pool.simulator.slack_events import app_mention, url_verification
from tests.http.harness import ApiServer, serve_api

ORG = "org-s"
TEAM, OTHER_TEAM = "T0SIMULATE", "T0ELSEWHERE"
CHANNEL = "C0ASKHERE"
ALLOWED, STRANGER = "U0ALLOWED", "U0STRANGER"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with serve_api(
        tmp_path_factory.mktemp("slack-api"),
        os.urandom(32).hex(),
        slack_signing_secret=Secret(SlackConfig().signing_secret),
        slack_workspace_orgs=f"{TEAM}={ORG}",
        slack_allowed_users=f"{ALLOWED},U0SOMEONE",
    ) as server:
        admin = server.client("admin")
        server.register(admin, ORG, server.sim.keys[0].key, "slack-account")
        yield server


@pytest.fixture
def deliver(api: ApiServer) -> Callable[..., tuple[int, bytes]]:
    url = api.base_url + EVENTS_PATH

    def send(payload: dict[str, object], **options: object) -> tuple[int, bytes]:
        return api.slack.deliver_event(url, payload, **options)  # type: ignore[arg-type]

    return send


def _executions(api: ApiServer, event_id: str) -> list[tuple[str, str | None]]:
    with api.runtime.db.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT status, user_id FROM orchestrator_executions WHERE idempotency_key = :key"),
            {"key": f"slack:{event_id}"},
        )
        return [(str(status), user) for status, user in rows]


def _replies(api: ApiServer, thread_ts: str, count: int, timeout: float = 30.0) -> list[SlackMessage]:
    """The replies in ``thread_ts`` once there are ``count`` (the event is handled in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in api.slack.messages if m.thread_ts == thread_ts]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)  # polling for a condition, bounded by the deadline


def test_the_url_verification_handshake_is_answered(deliver: Callable[..., tuple[int, bytes]]) -> None:
    status, body = deliver(url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"))
    assert status == 200
    assert json.loads(body) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_a_mention_delivered_three_times_is_delegated_and_answered_once(
    api: ApiServer, deliver: Callable[..., tuple[int, bytes]]
) -> None:
    event = app_mention(
        "What is a token bucket?", team_id=TEAM, channel=CHANNEL, user=ALLOWED, event_id="Ev0ONCE", ts="1700000001.000100"
    )
    assert deliver(event)[0] == 200
    assert deliver(event, retry_num=1)[0] == 200
    [reply] = _replies(api, "1700000001.000100", 1)
    assert deliver(event, retry_num=2)[0] == 200  # after the answer: still nothing more
    assert reply.channel_ref == CHANNEL and reply.text
    assert _executions(api, "Ev0ONCE") == [("succeeded", f"slack:{ALLOWED}")]
    assert api.sim.stats().total["received"] == 1
    # Give a late duplicate every chance to show up before counting.
    assert len(_replies(api, "1700000001.000100", 2, timeout=1.0)) == 1


@pytest.mark.parametrize("forgery", ["bad signature", "old timestamp"])
def test_a_forged_or_stale_delivery_gets_401_and_runs_nothing(
    api: ApiServer, deliver: Callable[..., tuple[int, bytes]], forgery: str
) -> None:
    event_id = f"Ev0FORGED{forgery.split()[0].upper()}"
    event = app_mention("Run me", team_id=TEAM, channel=CHANNEL, user=ALLOWED, event_id=event_id, ts="1700000002.000100")
    if forgery == "bad signature":
        status, _ = deliver(event, secret="not-the-signing-secret")
    else:
        status, _ = deliver(event, timestamp=int(time.time()) - 600)
    assert status == 401
    assert _executions(api, event_id) == []
    assert _replies(api, "1700000002.000100", 1, timeout=1.0) == []


def test_help_and_status_answer_in_the_thread(api: ApiServer, deliver: Callable[..., tuple[int, bytes]]) -> None:
    deliver(app_mention("help", team_id=TEAM, channel=CHANNEL, user=ALLOWED, event_id="Ev0HELP", ts="1700000003.000100"))
    deliver(app_mention("status", team_id=TEAM, channel=CHANNEL, user=ALLOWED, event_id="Ev0STATUS", ts="1700000004.000100"))
    [help_reply] = _replies(api, "1700000003.000100", 1)
    [status_reply] = _replies(api, "1700000004.000100", 1)
    assert help_reply.text == HELP
    assert status_reply.text is not None
    assert f"*{ORG}*: 1 account(s)" in status_reply.text and "slack-account: active, breaker closed" in status_reply.text
    assert _executions(api, "Ev0HELP") == [] and _executions(api, "Ev0STATUS") == []


def test_unknown_workspaces_and_other_users_get_a_polite_refusal(
    api: ApiServer, deliver: Callable[..., tuple[int, bytes]]
) -> None:
    deliver(app_mention("hi", team_id=OTHER_TEAM, channel=CHANNEL, user=ALLOWED, event_id="Ev0ELSE", ts="1700000005.000100"))
    deliver(app_mention("hi", team_id=TEAM, channel=CHANNEL, user=STRANGER, event_id="Ev0STRANGER", ts="1700000006.000100"))
    [elsewhere] = _replies(api, "1700000005.000100", 1)
    [stranger] = _replies(api, "1700000006.000100", 1)
    assert elsewhere.text is not None and "not connected to a claude-pool organization" in elsewhere.text
    assert stranger.text is not None and "not allowed" in stranger.text
    assert _executions(api, "Ev0ELSE") == [] and _executions(api, "Ev0STRANGER") == []


@pytest.mark.parametrize("value", ['{"T0123": 5}', "{broken", "T0123", "=acme"])
def test_a_malformed_workspace_mapping_is_a_clear_error(value: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        SlackCommands.from_settings(Settings(home=tmp_path, slack_workspace_orgs=value))
    assert "SLACK_WORKSPACE_ORGS" in str(caught.value) and "T0123ABCD=acme" in str(caught.value)


def test_the_mapping_takes_json_or_pairs_and_a_channel_wins(tmp_path: Path) -> None:
    for value in ('{"T01": "acme", "C02": "beta"}', "T01=acme; C02=beta"):
        commands = SlackCommands.from_settings(Settings(home=tmp_path, slack_workspace_orgs=value))
        assert commands.organization_for("T01", "C99") == "acme"
        assert commands.organization_for("T01", "C02") == "beta"
        assert commands.organization_for("T99", "C99") is None
