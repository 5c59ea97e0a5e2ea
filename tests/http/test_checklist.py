"""The original system's manual checklist, over HTTP: register, execute, and see the selection in
the log file, the note in Slack, the event on the stream and the rows in the three tables."""

from __future__ import annotations

import secrets
import time

import httpx
from sqlalchemy import text

from tests.http.harness import ORG_A, ApiServer, SseReader


def _rows(api: ApiServer, table: str) -> list[dict[str, object]]:
    with api.runtime.db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {table}"))]


def test_manual_checklist(api: ApiServer) -> None:
    admin = api.client("admin")
    key = api.sim.keys[0]
    account = api.register(admin, ORG_A, key.key, "checklist-primary")
    assert account["apiKeyHint"].endswith(key.key[-4:])
    assert key.key not in str(account)
    assert account["breaker"]["state"] == "closed"
    assert 0 <= account["capacity"]["headroom"] <= 1

    with SseReader(api.base_url, api.tokens["a"]) as stream:
        response = admin.post(
            "/api/orchestrator/execute",
            json={"message": "Say hello", "organizationId": ORG_A, "userId": "u-1", "maxTokens": 64},
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["status"] == "succeeded"
        assert result["text"]
        assert result["accountId"] and result["accountName"]
        assert result["usage"]["outputTokens"] > 0
        assert result["attempts"] >= 1 and result["latencyMs"] > 0

        selected = stream.wait_for(lambda e: e["event"] == "account.selected")
        assert selected["data"]["organizationId"] == ORG_A
        assert selected["data"]["data"]["executionId"] == result["executionId"]
        done = stream.wait_for(lambda e: e["event"] == "execution.succeeded")
        assert done["id"] and done["data"]["data"]["accountId"] == result["accountId"]
        assert done["data"]["data"]["executionId"] == result["executionId"]

    # The stored execution, as the API shows it.
    fetched = admin.get(f"/api/orchestrator/executions/{result['executionId']}")
    assert fetched.status_code == 200 and fetched.json()["status"] == "succeeded"
    assert fetched.json()["text"] == result["text"]

    # The log file holds the "account selection" line.
    assert api.runtime.settings.log_file is not None
    log_text = api.runtime.settings.log_file.read_text()
    assert "account selection" in log_text and key.key not in log_text

    # Slack got the activity note (sent after the answer: poll a moment).
    deadline = time.monotonic() + 10
    while not api.slack.messages_in("#it-test") and time.monotonic() < deadline:
        time.sleep(0.05)
    notes = api.slack.messages_in("#it-test")
    assert notes and "delegation succeeded" in (notes[-1].text or "")

    # The rows.
    assert any(r["id"] == account["id"] for r in _rows(api, "claude_accounts"))
    executions = [r for r in _rows(api, "orchestrator_executions") if r["id"] == result["executionId"]]
    assert executions and executions[0]["status"] == "succeeded"
    alerts = admin.get("/api/v1/admin/quota-alerts")
    assert alerts.status_code == 200 and isinstance(alerts.json(), list)
    _rows(api, "quota_alerts")  # the table exists (it may well be empty)


def test_account_lifecycle(api: ApiServer) -> None:
    admin = api.client("admin")
    account = api.register(admin, ORG_A, api.sim.keys[1].key, "lifecycle", requestsPerMinute=100)
    url = f"/api/v1/admin/claude-accounts/{account['id']}"
    assert account["limits"]["requestsPerMinute"] == 100
    assert account["limitOverrides"] == {"requestsPerMinute": 100}

    listed = admin.get("/api/v1/admin/claude-accounts", params={"organizationId": ORG_A}).json()
    assert account["id"] in {a["id"] for a in listed}
    patched = admin.patch(url, json={"weight": 5, "requestsPerMinute": None})
    assert patched.status_code == 200 and patched.json()["weight"] == 5
    assert "requestsPerMinute" not in patched.json()["limitOverrides"]
    assert admin.post(f"{url}/disable").json()["status"] == "disabled"
    assert (
        admin.get("/api/v1/admin/claude-accounts", params={"status": "disabled"}).json()[0]["id"]
        == account["id"]
    )
    assert admin.post(f"{url}/enable").json()["status"] == "active"

    new_key = "sk-ant-api03-" + "R" * 40 + "new1"
    rotated = admin.post(f"{url}/rotate-key", json={"apiKey": new_key})
    assert rotated.status_code == 200 and rotated.json()["apiKeyHint"].endswith("new1")
    assert new_key not in rotated.text and rotated.json()["keyRotatedAt"]

    assert admin.delete(url).status_code == 204
    gone = admin.get(url)
    assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found"


def test_errors_name_the_field(api: ApiServer) -> None:
    admin = api.client("admin")
    bad_key = admin.post(
        "/api/v1/admin/claude-accounts",
        json={"organizationId": ORG_A, "name": "x", "apiKey": "not-a-key", "tier": "pro"},
    )
    assert bad_key.status_code == 422 and bad_key.json()["error"]["field"] == "apiKey"
    assert "not-a-key" not in bad_key.text
    missing = admin.post("/api/v1/admin/claude-accounts", json={"organizationId": ORG_A})
    assert missing.status_code == 422 and missing.json()["error"]["field"] in ("name", "apiKey", "tier")
    tier = admin.post(
        "/api/v1/admin/claude-accounts",
        json={"organizationId": ORG_A, "name": "x", "apiKey": "sk-ant-api03-" + "T" * 40, "tier": "platinum"},
    )
    assert tier.status_code == 422 and tier.json()["error"]["field"] == "tier"
    no_message = admin.post("/api/orchestrator/execute", json={"organizationId": ORG_A})
    assert no_message.status_code == 422 and no_message.json()["error"]["field"] == "messages"
    broken = admin.post(
        "/api/orchestrator/execute", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["error"]["field"] == "body"
    bad_status = admin.get("/api/v1/admin/claude-accounts", params={"status": "zombie"})
    assert bad_status.status_code == 422 and bad_status.json()["error"]["field"] == "status"


def test_no_account_available_says_why(api: ApiServer) -> None:
    admin = api.client("admin")
    accounts = admin.get("/api/v1/admin/claude-accounts").json()
    for account in accounts:
        admin.post(f"/api/v1/admin/claude-accounts/{account['id']}/disable")
    try:
        response = admin.post("/api/orchestrator/execute", json={"message": "hi", "organizationId": ORG_A})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["type"] == "no_account_available" and error["executionId"]
        assert all(r["reason"] == "disabled" for r in error["reasons"])
        failed = admin.get(f"/api/orchestrator/executions/{error['executionId']}").json()
        assert failed["status"] == "failed" and failed["error"]["type"] == "NoAccountAvailable"
    finally:
        for account in accounts:
            admin.post(f"/api/v1/admin/claude-accounts/{account['id']}/enable")


def test_a_refusal_for_capacity_is_a_429_with_retry_after(api: ApiServer) -> None:
    admin = api.client("admin")
    org = "org-cooling"  # its own organization: the cooldown below must not reach other tests
    # never called: the account is cooling down for longer than the request accepts to wait
    account = api.register(admin, org, "sk-ant-api03-" + secrets.token_hex(24), "cooling")
    pool = api.app.state.ctx.pool
    api.server.call(pool.capacity.cool_down(f"account:{account['id']}", time.time() + 42))
    body = {"message": "hi", "organizationId": org, "maxQueueSeconds": 0}
    response = admin.post("/api/orchestrator/execute", json=body)
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["type"] == "no_account_available"
    assert 30 <= int(response.headers["Retry-After"]) <= 42 and error["retryAfterSeconds"] >= 30
    assert [r["reason"] for r in error["reasons"]] == ["cooling down (429)"]


def test_wait_false_and_idempotency(api: ApiServer) -> None:
    admin = api.client("admin")
    if not admin.get("/api/v1/admin/claude-accounts").json():
        api.register(admin, ORG_A, api.sim.keys[2].key, "async")
    body = {"message": "later", "organizationId": ORG_A, "wait": False, "idempotencyKey": "job-42"}
    accepted = admin.post("/api/orchestrator/execute", json=body)
    assert accepted.status_code == 202, accepted.text
    execution_id = accepted.json()["executionId"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = admin.get(f"/api/orchestrator/executions/{execution_id}").json()
        if state["status"] not in ("pending", "running"):
            break
        time.sleep(0.05)
    assert state["status"] == "succeeded", state
    again = admin.post("/api/orchestrator/execute", json={**body, "wait": True})
    assert again.status_code == 200 and again.json()["executionId"] == execution_id


def test_health(api: ApiServer) -> None:
    response = httpx.get(f"{api.base_url}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"]["status"] == "up"
    assert body["redis"]["status"] == "not_configured" and body["slack"]["status"] == "configured"
    assert set(body["pool"]) >= {"active", "openCircuit", "coolingDown", "disabled"}
