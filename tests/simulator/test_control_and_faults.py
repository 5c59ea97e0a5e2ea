"""Faults over time, the ``/_sim/`` control endpoints, and the Admin API usage report."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import pytest

from claude_pool.simulator import FaultRule, OutputSpec, RunningSimulator, Scenario

from .conftest import HELLO, MODEL


def http(sim: RunningSimulator, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    # Always the simulator's own http://127.0.0.1 URL.
    request = urllib.request.Request(sim.base_url + path, data=data, method=method, headers=headers or {})  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def ok(client: anthropic.Anthropic) -> bool:
    try:
        client.messages.create(model=MODEL, max_tokens=4, messages=HELLO)
        return True
    except anthropic.APIStatusError:
        return False


class ManualClock:
    """The simulator's clock, moved only by the test: a fault window opens and closes exactly when
    the test says, however slowly the requests themselves run."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def on_manual_clock(sim: RunningSimulator) -> ManualClock:
    clock = ManualClock()
    sim.state.clock = clock  # the simulator reads its time through this one attribute
    return clock


def test_overload_window_for_everyone(anthropic_sim_factory: Callable[..., RunningSimulator],
                                      client_for: Callable[..., Any]) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=2))
    clock = on_manual_clock(sim)
    now = sim.elapsed()
    sim.set_faults([FaultRule("overloaded", start=now + 0.3, end=now + 0.6)])
    a, b = client_for(sim, "acct-1"), client_for(sim, "acct-2")
    assert ok(a) and ok(b)
    clock.advance(0.35)
    with pytest.raises(anthropic.OverloadedError):
        a.messages.create(model=MODEL, max_tokens=4, messages=HELLO)
    assert not ok(b)
    clock.advance(0.3)  # past the window's end
    assert ok(a) and ok(b)
    assert sim.stats().total["fault_529"] == 2


def test_revoke_at_a_given_time(anthropic_sim_factory: Callable[..., RunningSimulator],
                                client_for: Callable[..., Any]) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=2))
    clock = on_manual_clock(sim)
    sim.add_fault({"kind": "revoke", "targets": ["acct-1"], "start": sim.elapsed() + 0.2})
    a, b = client_for(sim, "acct-1"), client_for(sim, "acct-2")
    assert ok(a)
    clock.advance(0.25)
    with pytest.raises(anthropic.AuthenticationError):
        a.messages.create(model=MODEL, max_tokens=4, messages=HELLO)
    assert ok(b)


def test_error_rate_is_seeded_and_close_to_the_rate(anthropic_sim_factory: Callable[..., RunningSimulator],
                                                   client_for: Callable[..., Any]) -> None:
    counts = []
    for _ in range(2):
        sim = anthropic_sim_factory(Scenario.uniform(accounts=1, seed=3, rpm=10_000))
        sim.set_faults([{"kind": "error", "status": 503, "rate": 0.3}])
        client = client_for(sim)
        outcomes = [ok(client) for _ in range(200)]
        counts.append(outcomes)
        assert sim.stats().total["fault_503"] == outcomes.count(False)
    assert counts[0] == counts[1]  # same seed, same sequence
    assert 0.2 <= counts[0].count(False) / 200 <= 0.4


def test_faults_target_keys_or_orgs(anthropic_sim_factory: Callable[..., RunningSimulator],
                                    client_for: Callable[..., Any]) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=3))
    sim.set_faults([{"kind": "error", "targets": [sim.key("acct-2").org]}])
    assert [ok(client_for(sim, f"acct-{i}")) for i in (1, 2, 3)] == [True, False, True]


def test_control_endpoints(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    sim = anthropic_sim
    assert http(sim, "GET", "/_sim/health")["ok"]
    described = http(sim, "GET", "/_sim/keys")
    assert [k["name"] for k in described["keys"]] == ["acct-1", "acct-2", "acct-3"]
    assert described["organizations"][0]["limits"]["rpm"] == 10_000

    client = client_for(sim)
    assert ok(client)
    assert http(sim, "GET", "/_sim/stats")["keys"]["acct-1"]["served"] == 1

    http(sim, "POST", "/_sim/faults", {"faults": [{"kind": "overloaded", "targets": ["acct-1"]}]})
    assert not ok(client)
    http(sim, "POST", "/_sim/faults", {"faults": []})
    assert ok(client)

    http(sim, "POST", "/_sim/faults", {"revoke": {"key": "acct-1", "status": 403}})
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model=MODEL, max_tokens=4, messages=HELLO)
    http(sim, "POST", "/_sim/faults", {"restore": "acct-1"})
    http(sim, "POST", "/_sim/revoke", {"key": sim.key("acct-2").key})
    assert not ok(client_for(sim, "acct-2"))

    added = http(sim, "POST", "/_sim/keys", {"name": "late", "org": "org-late", "limits": {"rpm": 1, "itpm": 100, "otpm": 100}})
    late = client_for(sim, added["key"]["key"])
    assert ok(late) and not ok(late)  # its own new org allows 1 request a minute
    http(sim, "POST", "/_sim/limits", {"org": "org-late", "rpm": 10_000, "itpm": 100, "otpm": 100})
    assert ok(late)

    http(sim, "POST", "/_sim/reset", {})
    stats = http(sim, "GET", "/_sim/stats")
    assert stats["total"]["received"] == 0 and stats["keys"]["late"]["served"] == 0

    with pytest.raises(urllib.error.HTTPError) as info:
        http(sim, "POST", "/_sim/revoke", {"key": "nobody"})
    assert info.value.code == 400
    info.value.close()


def test_usage_report(anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any]) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=2, keys_per_org=2, output=OutputSpec(mode="fixed", tokens=5)))  # capped at max_tokens=4
    for name in ("acct-1", "acct-1", "acct-1b", "acct-2"):
        assert ok(client_for(sim, name))
    org = sim.org_of("acct-1")
    start = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = f"?starting_at={start}&bucket_width=1m&group_by[]=api_key_id&limit=10"
    report = http(sim, "GET", "/v1/organizations/usage_report/messages" + query, headers={"x-api-key": org.admin_key})
    assert report["has_more"] is False and len(report["data"]) >= 5
    results = [r for bucket in report["data"] for r in bucket["results"]]
    by_key: dict[str, int] = {}
    for r in results:
        by_key[r["api_key_id"]] = by_key.get(r["api_key_id"], 0) + r["output_tokens"]
        assert r["uncached_input_tokens"] % 11 == 0 and r["cache_read_input_tokens"] == 0
    assert by_key == {sim.key("acct-1").id: 8, sim.key("acct-1b").id: 4}  # acct-2 is another org

    daily = http(sim, "GET", f"/v1/organizations/usage_report/messages?starting_at={start}",
                 headers={"x-api-key": org.admin_key})
    assert sum(r["output_tokens"] for b in daily["data"] for r in b["results"]) == 12
    assert all(r["api_key_id"] is None for b in daily["data"] for r in b["results"])

    with pytest.raises(urllib.error.HTTPError) as info:
        http(sim, "GET", "/v1/organizations/usage_report/messages" + query, headers={"x-api-key": sim.keys[0].key})
    assert info.value.code == 401
    info.value.close()


def test_stats_tell_when_each_key_last_received_a_call(
    anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any]
) -> None:
    """One snapshot answers "when did the broken key stop getting calls", revoked calls included."""
    sim = anthropic_sim_factory(Scenario.uniform(accounts=2))
    a = client_for(sim, "acct-1")
    before = sim.elapsed()
    assert ok(a)
    after = sim.elapsed()
    sim.revoke("acct-1")
    assert not ok(a)  # a 401 is still a call the key received
    revoked_call = sim.elapsed()
    seen = http(sim, "GET", "/_sim/stats")["last_received_s"]
    assert seen["acct-2"] is None
    assert after <= seen["acct-1"] <= revoked_call
    assert seen["acct-1"] >= before
    sim.reset()
    assert http(sim, "GET", "/_sim/stats")["last_received_s"] == {"acct-1": None, "acct-2": None}
