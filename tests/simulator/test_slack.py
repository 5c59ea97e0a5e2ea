"""The real ``slack_sdk.WebClient`` against the Slack simulator."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from claude_pool.simulator import RunningSlackSimulator, SlackConfig, slack_simulator

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*acct-1* is rate limited"}}]


def client(sim: RunningSlackSimulator, token: str | None = None) -> WebClient:
    return WebClient(token=token or sim.token, base_url=sim.base_url, timeout=5)


def test_post_message_is_kept(slack_sim: RunningSlackSimulator) -> None:
    response = client(slack_sim).chat_postMessage(channel="#alerts", text="fallback", blocks=BLOCKS)
    assert response["ok"] is True and response["channel"].startswith("C")
    [message] = slack_sim.messages
    assert (message.channel, message.text, message.blocks, message.ts) == (
        response["channel"], "fallback", BLOCKS, response["ts"])
    assert slack_sim.messages_in("#alerts") == [message]
    assert slack_sim.messages_in(response["channel"]) == [message]


def test_auth_test_posts_a_form(slack_sim: RunningSlackSimulator) -> None:
    assert client(slack_sim).auth_test()["team_id"] == "T0SIMULATE"


@pytest.mark.parametrize("token", ["xoxb-wrong", None])
def test_invalid_auth(slack_sim: RunningSlackSimulator, token: str | None) -> None:
    web = WebClient(token=token, base_url=slack_sim.base_url, timeout=5)
    with pytest.raises(SlackApiError) as info:
        web.chat_postMessage(channel="#alerts", text="hi")
    assert info.value.response["error"] == ("invalid_auth" if token else "not_authed")


def test_revoked_token(slack_sim: RunningSlackSimulator) -> None:
    slack_sim.revoke(slack_sim.token)
    with pytest.raises(SlackApiError) as info:
        client(slack_sim).auth_test()
    assert info.value.response["error"] == "token_revoked"


def test_restricted_channels(slack_sim_factory: Callable[..., RunningSlackSimulator]) -> None:
    sim = slack_sim_factory(channels={"alerts": "C0ALERTS", "ops": "C0OPS"}, member_of=("alerts",), burst=10)
    web = client(sim)
    assert web.chat_postMessage(channel="alerts", text="hi")["channel"] == "C0ALERTS"
    assert web.chat_postMessage(channel="C0ALERTS", text="hi")["ok"]
    for channel, error in (("#nowhere", "channel_not_found"), ("ops", "not_in_channel")):
        with pytest.raises(SlackApiError) as info:
            web.chat_postMessage(channel=channel, text="hi")
        assert info.value.response["error"] == error
    with pytest.raises(SlackApiError) as info, pytest.warns(UserWarning, match="text"):
        web.chat_postMessage(channel="alerts")
    assert info.value.response["error"] == "no_text"


def test_rate_limited_per_channel(slack_sim: RunningSlackSimulator) -> None:
    web = client(slack_sim)
    web.chat_postMessage(channel="#alerts", text="1")
    with pytest.raises(SlackApiError) as info:
        web.chat_postMessage(channel="#alerts", text="2")
    response = info.value.response
    assert response.status_code == 429 and response["error"] == "ratelimited"
    assert response.headers["Retry-After"] == "1"
    web.chat_postMessage(channel="#other", text="another channel has its own pace")
    assert [m.text for m in slack_sim.messages] == ["1", "another channel has its own pace"]
    assert slack_sim.stats()["ratelimited"] == 1


def test_bursts_when_configured() -> None:
    with slack_simulator(rate_per_channel=100, burst=20) as sim:
        web = client(sim)
        for i in range(20):
            web.chat_postMessage(channel="#alerts", text=str(i))
        assert len(sim.messages_in("alerts")) == 20
        sim.configure(rate_per_channel=0.5, burst=1)
        web.chat_postMessage(channel="#alerts", text="x")
        with pytest.raises(SlackApiError) as info:
            web.chat_postMessage(channel="#alerts", text="y")
        assert info.value.response.headers["Retry-After"] == "2"


def test_outage_modes(slack_sim: RunningSlackSimulator) -> None:
    web = client(slack_sim)
    slack_sim.set_outage("503")
    with pytest.raises(SlackApiError) as info:
        web.chat_postMessage(channel="#alerts", text="down")
    assert info.value.response.status_code == 503
    slack_sim.set_outage("reset")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        web.chat_postMessage(channel="#alerts", text="gone")
    slack_sim.set_outage(None)
    assert web.chat_postMessage(channel="#alerts", text="back")["ok"]
    assert [m.text for m in slack_sim.messages] == ["back"]
    assert slack_sim.stats()["outage"] >= 2  # WebClient retries a reset connection once by default


def _control(sim: RunningSlackSimulator, path: str, body: object = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(sim.origin + path, data=data, method="POST" if data else "GET")  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return json.loads(response.read())


def test_control_endpoints(slack_sim: RunningSlackSimulator) -> None:
    web = client(slack_sim)
    _control(slack_sim, "/_sim/config", {"rate_per_channel": 50, "burst": 5})
    for i in range(5):
        web.chat_postMessage(channel="#alerts", text=str(i))
    messages = _control(slack_sim, "/_sim/messages")
    assert isinstance(messages, list) and [m["text"] for m in messages] == ["0", "1", "2", "3", "4"]
    _control(slack_sim, "/_sim/outage", {"mode": "503"})
    with pytest.raises(SlackApiError):
        web.chat_postMessage(channel="#alerts", text="x")
    _control(slack_sim, "/_sim/outage", {"mode": None})
    _control(slack_sim, "/_sim/reset", {})
    assert _control(slack_sim, "/_sim/messages") == []
    _control(slack_sim, "/_sim/revoke", {"token": slack_sim.token})
    with pytest.raises(SlackApiError):
        web.auth_test()


def test_default_config_is_slacks_pace() -> None:
    assert SlackConfig().rate_per_channel == 1.0
