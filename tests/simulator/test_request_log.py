"""The request log: what each key sent (body, version and beta headers, path), for pass-through checks,
read in process (``RunningSimulator.requests``) and over HTTP (``GET /_sim/requests?key=NAME``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from claude_pool.simulator import REQUEST_LOG_SIZE, RunningSimulator, Scenario

from .conftest import HELLO, MODEL


def control_requests(sim: RunningSimulator, query: str) -> tuple[int, Any]:
    # Always the simulator's own http://127.0.0.1 URL.
    try:
        with urllib.request.urlopen(f"{sim.base_url}/_sim/requests?{query}", timeout=10) as response:  # noqa: S310
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def test_what_a_key_sent_is_recorded(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim, "acct-2")
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=32, messages=HELLO, system="be brief", metadata={"user_id": "user-7"},
        extra_headers={"anthropic-beta": "context-1m-2025-08-07,token-efficient-tools-2025-02-19"},
    )
    record = anthropic_sim.last_request("acct-2")
    assert record["request_id"] == raw.headers["request-id"]
    assert (record["method"], record["path"], record["query"]) == ("POST", "/v1/messages", "")
    assert record["headers"] == {"anthropic-version": "2026-10-21",
                                 "anthropic-beta": "context-1m-2025-08-07,token-efficient-tools-2025-02-19"}
    assert record["body"] == {"model": MODEL, "max_tokens": 32, "messages": HELLO, "system": "be brief",
                              "metadata": {"user_id": "user-7"}}
    # The same, over HTTP, by name or by secret; other keys have sent nothing.
    assert control_requests(anthropic_sim, "key=acct-2") == (200, {"key": "acct-2", "requests": [record]})
    secret = anthropic_sim.key("acct-2").key
    assert control_requests(anthropic_sim, f"key={secret}")[1]["requests"] == [record]
    assert anthropic_sim.requests("acct-1") == []


def test_every_route_and_outcome_is_recorded(anthropic_sim_factory: Callable[..., RunningSimulator],
                                             client_for: Callable[..., Any]) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, rpm=1))
    client = client_for(sim)
    client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError):  # refused, but what it brought is still on record
        client.messages.create(model=MODEL, max_tokens=9, messages=HELLO)
    client.messages.count_tokens(model=MODEL, messages=HELLO)
    client.models.retrieve(MODEL)
    old = anthropic.Anthropic(api_key=sim.key("acct-1").key, base_url=sim.base_url, max_retries=0,
                              default_headers={"anthropic-version": "2023-06-01"})
    with old:
        old.models.list(limit=2)
    log = sim.requests("acct-1")
    assert [(r["method"], r["path"]) for r in log] == [
        ("POST", "/v1/messages"), ("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens"),
        ("GET", f"/v1/models/{MODEL}"), ("GET", "/v1/models"),
    ]
    assert [r["body"]["max_tokens"] for r in log[:2]] == [8, 9]
    assert log[3]["body"] is None and log[4]["query"] == "limit=2"
    assert [r["headers"]["anthropic-version"] for r in log] == ["2026-10-21"] * 4 + ["2023-06-01"]
    assert all(r["headers"]["anthropic-beta"] is None for r in log)


def test_unauthenticated_and_unparsed_requests_are_not_recorded(anthropic_sim: RunningSimulator,
                                                                client_for: Callable[..., Any]) -> None:
    unknown = "sk-ant-api03-" + "x" * 86 + "AA"
    with pytest.raises(anthropic.AuthenticationError):
        client_for(anthropic_sim, unknown).messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    with pytest.raises(anthropic.BadRequestError):
        client_for(anthropic_sim).post("/v1/messages", content=b"{not json", cast_to=object,
                                       options={"headers": {"content-type": "application/json"}})
    assert all(anthropic_sim.requests(k.name) == [] for k in anthropic_sim.keys)


def test_the_log_is_bounded_and_reset_with_the_counts(anthropic_sim: RunningSimulator,
                                                      client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim)
    for i in range(REQUEST_LOG_SIZE + 5):
        client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": f"question {i}"}])
    log = anthropic_sim.requests("acct-1")
    assert len(log) == REQUEST_LOG_SIZE
    # The oldest ones went first.
    assert [r["body"]["messages"][0]["content"] for r in (log[0], log[-1])] == ["question 5", "question 104"]
    anthropic_sim.reset()
    assert anthropic_sim.requests("acct-1") == []


def test_keys_added_later_have_a_log(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    org = anthropic_sim.key("acct-1").org
    added = anthropic_sim.add_key("late", org)
    client_for(anthropic_sim, added.key).messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    assert [r["path"] for r in anthropic_sim.requests("late")] == ["/v1/messages"]


def test_control_route_needs_a_known_key(anthropic_sim: RunningSimulator) -> None:
    status, body = control_requests(anthropic_sim, "key=nobody")
    assert status == 400 and body["ok"] is False and "nobody" in body["error"]
    assert control_requests(anthropic_sim, "")[0] == 400
