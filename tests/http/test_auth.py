"""Every route but /health refuses a missing or wrong token (401), and a token of other
organizations gets 403, or 404 where the existence of an id must not leak."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from claude_pool.core.errors import SettingsError
from claude_pool.http import ApiTokens
from claude_pool.http.auth import PUBLIC_PATHS
from claude_pool.http.gateway import ORGANIZATION_HEADER
from tests.http.harness import ORG_A, ORG_B, ApiServer, iter_routes

_A_KEY_INDEX = 0


@pytest.fixture(scope="module")
def org_a_things(api: ApiServer) -> Iterator[dict[str, str]]:
    admin = api.client("admin")
    account = api.register(admin, ORG_A, api.sim.keys[_A_KEY_INDEX].key, "auth-a")
    execution = admin.post("/api/orchestrator/execute", json={"message": "hi", "organizationId": ORG_A})
    assert execution.status_code == 200, execution.text
    yield {"account": account["id"], "execution": execution.json()["executionId"]}


def _requests(things: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
    """One request per route, aimed at organization A's things."""
    acc = things["account"]
    return {
        ("POST", "/api/v1/admin/claude-accounts"): {
            "url": "/api/v1/admin/claude-accounts",
            "json": {
                "organizationId": ORG_A,
                "name": "n",
                "apiKey": "sk-ant-api03-" + "Z" * 40,
                "tier": "pro",
            },
        },
        ("GET", "/api/v1/admin/claude-accounts"): {
            "url": "/api/v1/admin/claude-accounts",
            "params": {"organizationId": ORG_A},
        },
        ("GET", "/api/v1/admin/claude-accounts/{account_id}"): {
            "url": f"/api/v1/admin/claude-accounts/{acc}"
        },
        ("PATCH", "/api/v1/admin/claude-accounts/{account_id}"): {
            "url": f"/api/v1/admin/claude-accounts/{acc}",
            "json": {"weight": 2},
        },
        ("DELETE", "/api/v1/admin/claude-accounts/{account_id}"): {
            "url": f"/api/v1/admin/claude-accounts/{acc}"
        },
        ("POST", "/api/v1/admin/claude-accounts/{account_id}/disable"): {
            "url": f"/api/v1/admin/claude-accounts/{acc}/disable",
        },
        ("POST", "/api/v1/admin/claude-accounts/{account_id}/enable"): {
            "url": f"/api/v1/admin/claude-accounts/{acc}/enable",
        },
        ("POST", "/api/v1/admin/claude-accounts/{account_id}/rotate-key"): {
            "url": f"/api/v1/admin/claude-accounts/{acc}/rotate-key",
            "json": {"apiKey": "sk-ant-api03-" + "Y" * 40},
        },
        ("GET", "/api/v1/admin/quota-alerts"): {
            "url": "/api/v1/admin/quota-alerts",
            "params": {"organizationId": ORG_A},
        },
        ("POST", "/api/orchestrator/execute"): {
            "url": "/api/orchestrator/execute",
            "json": {"message": "x", "organizationId": ORG_A},
        },
        ("GET", "/api/orchestrator/executions/{execution_id}"): {
            "url": f"/api/orchestrator/executions/{things['execution']}",
        },
        ("GET", "/api/events/stream"): {"url": "/api/events/stream", "params": {"organizationId": ORG_A}},
        ("GET", "/openapi.json"): {"url": "/openapi.json"},
        ("GET", "/metrics"): {"url": "/metrics"},
        # The drop-in Anthropic endpoint, aimed at A's accounts by the organization header.
        ("POST", "/v1/messages"): {
            "url": "/v1/messages",
            "json": {
                "model": "claude-sonnet-5-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
            },
            "headers": {ORGANIZATION_HEADER: ORG_A},
        },
        ("POST", "/v1/messages/count_tokens"): {
            "url": "/v1/messages/count_tokens",
            "json": {"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": "x"}]},
            "headers": {ORGANIZATION_HEADER: ORG_A},
        },
        ("GET", "/v1/models"): {"url": "/v1/models", "headers": {ORGANIZATION_HEADER: ORG_A}},
        ("GET", "/v1/models/{model_id}"): {
            "url": "/v1/models/claude-sonnet-5-5",
            "headers": {ORGANIZATION_HEADER: ORG_A},
        },
    }


# What a token of organization B gets on A's things: 404 where an id would tell that it exists.
_FOREIGN_STATUS = {
    "/api/v1/admin/claude-accounts/{account_id}": 404,
    "/api/v1/admin/claude-accounts/{account_id}/disable": 404,
    "/api/v1/admin/claude-accounts/{account_id}/enable": 404,
    "/api/v1/admin/claude-accounts/{account_id}/rotate-key": 404,
    "/api/orchestrator/executions/{execution_id}": 404,
    "/openapi.json": 200,  # any valid token may read the schema
}


def _send(client: httpx.Client, method: str, spec: dict[str, Any]) -> httpx.Response:
    return client.request(
        method, spec["url"], json=spec.get("json"), params=spec.get("params"), headers=spec.get("headers")
    )


def _error_type(response: httpx.Response) -> str:
    """The error's type: the API's own shape and Anthropic's (under /v1/) both nest it in "error"."""
    return str(response.json()["error"]["type"])


# What the drop-in endpoint's errors are called, in Anthropic's words.
_ANTHROPIC_TYPES = {"unauthorized": "authentication_error", "forbidden": "permission_error"}


def _expected_type(path: str, ours: str) -> str:
    return _ANTHROPIC_TYPES[ours] if path.startswith("/v1/") else ours


def test_every_route_is_covered(api: ApiServer, org_a_things: dict[str, str]) -> None:
    # The public paths: /health, and /slack/events (Slack's signature instead of a token).
    routes = {r for r in iter_routes(api.app) if r[1] not in PUBLIC_PATHS}
    assert routes == set(_requests(org_a_things)), "a new route needs its auth case here"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token-wrong-token", "Basic dXNlcjpwYXNz", "Bearer  x", "bearer"],
    ids=["missing", "wrong", "basic", "short", "no-token"],
)
def test_without_a_valid_token_every_route_answers_401(
    api: ApiServer, org_a_things: dict[str, str], header: str | None
) -> None:
    client = api.client(None)
    headers = {"Authorization": header} if header is not None else {}
    for (method, path), spec in _requests(org_a_things).items():
        response = client.request(
            method,
            spec["url"],
            json=spec.get("json"),
            params=spec.get("params"),
            headers={**spec.get("headers", {}), **headers},
        )
        assert response.status_code == 401, (method, spec["url"], response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert _error_type(response) == _expected_type(path, "unauthorized")
    # Even a body that is not JSON is refused for the token first: nothing is read before auth.
    response = client.post("/api/orchestrator/execute", content=b"{", headers=headers)
    assert response.status_code == 401
    unknown = client.get("/api/nothing-here", headers=headers)
    assert unknown.status_code == 401


def test_health_needs_no_token(api: ApiServer) -> None:
    assert httpx.get(f"{api.base_url}/health").status_code == 200


def test_other_organizations_token_gets_403_or_404(api: ApiServer, org_a_things: dict[str, str]) -> None:
    client = api.client("b")
    for (method, path), spec in _requests(org_a_things).items():
        response = _send(client, method, spec)
        expected = _FOREIGN_STATUS.get(path, 403)
        assert response.status_code == expected, (method, spec["url"], response.text)
        if expected != 200:
            assert _error_type(response) in (_expected_type(path, "forbidden"), "not_found")
    # A's account, by id, through B's token, reads exactly like an id that never existed.
    foreign = client.get(f"/api/v1/admin/claude-accounts/{org_a_things['account']}").json()
    missing = client.get("/api/v1/admin/claude-accounts/no-such-id").json()
    assert foreign["error"]["message"].replace(org_a_things["account"], "X") == missing["error"][
        "message"
    ].replace("no-such-id", "X")
    # B's unfiltered list and alerts hold nothing of A; A's account is untouched.
    assert all(a["organizationId"] == ORG_B for a in client.get("/api/v1/admin/claude-accounts").json())
    assert all(a["organizationId"] == ORG_B for a in client.get("/api/v1/admin/quota-alerts").json())
    assert api.client("a").get(f"/api/v1/admin/claude-accounts/{org_a_things['account']}").status_code == 200


def test_multi_org_and_global_tokens_see_their_organizations(
    api: ApiServer, org_a_things: dict[str, str]
) -> None:
    for who in ("a", "ab", "admin"):
        response = api.client(who).get(f"/api/orchestrator/executions/{org_a_things['execution']}")
        assert response.status_code == 200, who


# --- token configuration --------------------------------------------------------------------------


def test_tokens_parse_json_and_plain_forms() -> None:
    t1, t2, t3 = "t" * 20, "u" * 20, "v" * 20
    from_json = ApiTokens.parse(f'{{"{t1}": ["org-a", "org-b"], "{t2}": "*"}}')
    plain = ApiTokens.parse(f"{t1}=org-a,org-b; {t2}=*\n{t3}=org-c")
    for tokens in (from_json, plain):
        a = tokens.authenticate(t1)
        assert a is not None and a.organizations == frozenset({"org-a", "org-b"})
        admin = tokens.authenticate(t2)
        assert admin is not None and admin.is_global and admin.can_see("anything")
        assert tokens.authenticate("x" * 20) is None
    assert len(plain) == 3 and len(ApiTokens.parse("")) == 0


def test_tokens_are_kept_only_as_digests() -> None:
    token = "secret-token-" + "s" * 20
    tokens = ApiTokens.parse(f"{token}=org-a")
    assert token not in repr(tokens) and token not in repr(vars(tokens))
    assert all(isinstance(digest, bytes) and len(digest) == 32 for digest, _ in tokens._entries)


@pytest.mark.parametrize(
    "value",
    [
        "short=org-a",
        "{not json",
        '{"' + "t" * 20 + '": 5}',
        "t" * 20 + "=",
        "t" * 20 + "=bad org",
        "no-equals-sign-here",
    ],
)
def test_bad_token_config_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        ApiTokens.parse(value)
    assert "CLAUDE_POOL_API_TOKENS" in str(caught.value)
    assert "t" * 20 not in str(caught.value)
