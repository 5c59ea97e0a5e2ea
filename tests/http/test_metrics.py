"""``GET /metrics`` after a known run against the simulator: it parses as Prometheus text, carries
the right values, and holds no key material."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from claude_pool.simulator import FaultRule, Limits
from tests.http.harness import ApiServer

ORG, REFUSED_ORG = "org-m", "org-r"
RUNS = 6
# Two accounts of one Anthropic organization share a capacity group (one bucket); their bucket is
# cooling down when the first of GROUP_RUNS delegations arrives, so that one waits for its place.
GROUP_ORG, GROUP, GROUP_RUNS, COOLDOWN = "org-g", "metrics-group", 3, 3.0


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def run(api: ApiServer) -> Iterator[dict[str, Any]]:
    """Six delegations on org-m (one account always answering 429, one with its breaker forced
    open), one refused delegation on org-r (its only account disabled) and one that fails for good
    (a model that does not exist)."""
    admin = api.client("admin")
    keys = api.sim.keys
    ok = api.register(admin, ORG, keys[0].key, "metrics-ok")
    limited = api.register(admin, ORG, keys[1].key, "metrics-429")
    spare = api.register(admin, ORG, keys[2].key, "metrics-spare")
    refused = api.register(admin, REFUSED_ORG, keys[3].key, "metrics-off")
    api.sim.add_fault(FaultRule(kind="ramp", targets=(keys[1].name,)))
    api.server.call(api.app.state.ctx.pool.breaker.force_open(spare["id"], "metrics drill", seconds=600))
    assert admin.post(f"/api/v1/admin/claude-accounts/{refused['id']}/disable").status_code == 200
    answers = []
    for n in range(RUNS):
        body = {"message": f"question {n}", "organizationId": ORG, "maxTokens": 20, "strategy": "round_robin"}
        response = admin.post("/api/orchestrator/execute", json=body)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    _run_the_group(api)
    refusal = admin.post("/api/orchestrator/execute", json={"message": "x", "organizationId": REFUSED_ORG})
    assert refusal.status_code >= 400
    wrong_model = {"message": "x", "organizationId": ORG, "model": "no-such-model"}
    assert admin.post("/api/orchestrator/execute", json=wrong_model).status_code >= 400
    scraped = admin.get("/metrics")
    assert scraped.status_code == 200, scraped.text
    yield {
        "text": scraped.text,
        "content_type": scraped.headers["content-type"],
        "answers": answers,
        "names": {"ok": ok["name"], "limited": limited["name"], "spare": spare["name"]},
        "limited_key": keys[1].name,
    }


def _run_the_group(api: ApiServer) -> None:
    admin = api.client("admin")
    limits = Limits(rpm=10_000, itpm=10_000_000, otpm=2_000_000)
    for n in (1, 2):
        spec = api.sim.add_key(f"metrics-g{n}", "sim-org-g", limits=limits)
        api.register(admin, GROUP_ORG, spec.key, spec.name, capacityGroup=GROUP)
    # Another worker met a 429 on the group's bucket a moment ago: it cools down for COOLDOWN s.
    capacity = api.app.state.ctx.pool.capacity
    api.server.call(capacity.cool_down(f"group:{GROUP}", time.time() + COOLDOWN))
    for n in range(GROUP_RUNS):
        body = {"message": f"grouped {n}", "organizationId": GROUP_ORG, "maxTokens": 20}
        response = admin.post("/api/orchestrator/execute", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["attempts"] == 1


def test_metrics_parse_and_count_the_run(api: ApiServer, run: dict[str, Any]) -> None:
    assert run["content_type"].startswith("text/plain")
    samples = _samples(run["text"])
    answers = run["answers"]
    assert {a["accountName"] for a in answers} == {"metrics-ok"}
    account = {"organization": ORG, "account": "metrics-ok"}
    assert _value(samples, "claude_pool_requests_total", **account, outcome="success") == RUNS
    refused_429 = api.sim.stats().key(run["limited_key"])["received"]
    assert refused_429 >= 1
    limited = {"organization": ORG, "account": "metrics-429"}
    assert _value(samples, "claude_pool_requests_total", **limited, outcome="rate_limited") == refused_429
    assert _value(samples, "claude_pool_upstream_429_total", **limited) == refused_429
    assert _value(samples, "claude_pool_failovers_total", organization=ORG) == sum(
        a["attempts"] - 1 for a in answers
    )
    assert _value(samples, "claude_pool_tokens_total", **account, kind="input") == sum(
        a["usage"]["inputTokens"] for a in answers
    )
    assert _value(samples, "claude_pool_tokens_total", **account, kind="output") == sum(
        a["usage"]["outputTokens"] for a in answers
    )
    assert _value(samples, "claude_pool_execution_seconds_count", organization=ORG) == RUNS
    assert _value(samples, "claude_pool_admission_refusals_total", organization=REFUSED_ORG, reason="no_account") == 1
    # The refusal at admission is also told to the pool's listeners as it happens (the live counter).
    refused = {"organization": REFUSED_ORG, "error": "NoAccountAvailable"}
    assert _value(samples, "claude_pool_delegation_failures_total", **refused) == 1
    assert _value(samples, "claude_pool_delegation_failures_total", organization=ORG, error="CallerRequestError") == 1


def test_metrics_show_breakers_headroom_and_the_outbox(run: dict[str, Any]) -> None:
    samples = _samples(run["text"])
    spare = {"organization": ORG, "account": "metrics-spare"}
    assert _value(samples, "claude_pool_breaker_state", **spare) == 2
    assert _value(samples, "claude_pool_breaker_state", organization=ORG, account="metrics-ok") == 0
    assert _value(samples, "claude_pool_breaker_transitions_total", **spare, to_state="open") == 1
    headrooms = [v for (name, _), v in samples.items() if name == "claude_pool_headroom_ratio"]
    assert len(headrooms) == 6 and all(0.0 <= h <= 1.0 for h in headrooms)
    assert _value(samples, "claude_pool_account_active", organization=REFUSED_ORG, account="metrics-off", status="disabled") == 0
    # The forced opening is an account alert waiting for the quota sweep to send it.
    assert _value(samples, "claude_pool_alert_outbox_depth", table="account_alerts") == 1
    assert _value(samples, "claude_pool_alert_outbox_depth", table="quota_alerts") == 0
    assert _value(samples, "claude_pool_scrape_errors", source="capacity") == 0


def test_metrics_show_the_admission_wait_of_each_call(run: dict[str, Any]) -> None:
    samples = _samples(run["text"])

    def total(name: str, organization: str, **labels: str) -> float:
        wanted = {("organization", organization), *labels.items()}
        return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)

    wait = "claude_pool_admission_wait_seconds"
    # every admitted call is observed once: one per delegation here (no fail-over in org-g)
    assert total(f"{wait}_count", GROUP_ORG) == GROUP_RUNS
    # the first waited out the cool-down (at most its length), the others went at once
    assert total(f"{wait}_bucket", GROUP_ORG, le="0.0") == GROUP_RUNS - 1
    assert 0.0 < total(f"{wait}_sum", GROUP_ORG) <= COOLDOWN
    assert total(f"{wait}_bucket", GROUP_ORG, le="+Inf") == GROUP_RUNS
    # org-m's calls, fail-overs and the one with a wrong model were all admitted at once
    attempts = sum(a["attempts"] for a in run["answers"]) + 1
    assert total(f"{wait}_count", ORG) == total(f"{wait}_bucket", ORG, le="0.0") == attempts


def test_metrics_show_the_headroom_of_each_capacity_group(run: dict[str, Any]) -> None:
    samples = _samples(run["text"])
    groups = {
        dict(ls)["group"]: v for (n, ls), v in samples.items() if n == "claude_pool_capacity_group_headroom_ratio"
    }
    assert list(groups) == [GROUP]  # accounts without a group have their per-account series only
    members = [
        _value(samples, "claude_pool_headroom_ratio", organization=GROUP_ORG, account=f"metrics-g{n}")
        for n in (1, 2)
    ]
    # one bucket: the group's headroom is its accounts'
    assert 0.0 <= groups[GROUP] <= 1.0 and groups[GROUP] == min(members)


def test_metrics_hold_no_key_material(api: ApiServer, run: dict[str, Any]) -> None:
    for spec in api.sim.keys:
        assert spec.key not in run["text"]
        assert spec.key[14:-4] not in run["text"]
    assert "sk-ant" not in run["text"]


def test_metrics_need_a_token_for_every_organization(api: ApiServer, run: dict[str, Any]) -> None:
    assert api.client(None).get("/metrics").status_code == 401
    scoped = api.client("a").get("/metrics")
    assert scoped.status_code == 403
    assert "'*' token" in scoped.json()["error"]["message"]


def test_the_grafana_dashboard_queries_only_series_that_metrics_exposes(run: dict[str, Any]) -> None:
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-claude-pool.json").read_text())
    exposed = {sample.name for family in text_string_to_metric_families(run["text"]) for sample in family.samples}
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bclaude_pool_[a-z0-9_]+", target["expr"])
    }
    assert len(dashboard["panels"]) >= 10 and queried
    assert queried - exposed == set()
    # Every series the endpoint serves is on the dashboard somewhere.
    served = {name.removesuffix("_total") for name in exposed if not name.endswith(("_created", "_count", "_sum"))}
    shown = {name.removesuffix("_total") for name in queried}
    assert served - shown - {"claude_pool_scrape_errors"} == set()
