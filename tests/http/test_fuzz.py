"""Property-based fuzzing of every route: arbitrary JSON, query strings and path parameters never
get a 500, and no response ever carries an API key (canary keys are registered beforehand, offered
to the fuzzer as values, and looked for in every response)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from claude_pool.core.redaction import KEY_PATTERN
from claude_pool.http.schemas import AccountCreateBody, AccountUpdateBody, ExecuteBody, RotateKeyBody
from tests.http.harness import ORG_A, ORG_B, ApiServer, iter_routes

CANARIES = [f"sk-ant-api03-CANARY{n}" + "c" * 30 + f"{n:04d}" for n in range(3)]

_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("POST", "/api/v1/admin/claude-accounts"): AccountCreateBody,
    ("PATCH", "/api/v1/admin/claude-accounts/{account_id}"): AccountUpdateBody,
    ("POST", "/api/v1/admin/claude-accounts/{account_id}/rotate-key"): RotateKeyBody,
    ("POST", "/api/orchestrator/execute"): ExecuteBody,
}
_QUERY = ["organizationId", "status", "accountId", "limit"]


@pytest.fixture(scope="module")
def world(api: ApiServer) -> Iterator[dict[str, Any]]:
    """Real accounts (the simulator's keys) in two organizations, and disabled canaries."""
    admin = api.client("admin")
    keys = [k.key for k in api.sim.keys]
    ids = [
        api.register(admin, ORG_A if n % 2 else ORG_B, key, f"real-{n}")["id"] for n, key in enumerate(keys)
    ]
    for n, canary in enumerate(CANARIES):
        account = api.register(admin, ORG_A, canary, f"canary-{n}")
        admin.post(f"/api/v1/admin/claude-accounts/{account['id']}/disable")
        ids.append(account["id"])
    execution = admin.post("/api/orchestrator/execute", json={"message": "seed", "organizationId": ORG_A})
    assert execution.status_code == 200
    yield {"secrets": CANARIES + keys, "ids": ids, "execution": execution.json()["executionId"]}


def _json_values(secrets: list[str]) -> st.SearchStrategy[Any]:
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False)
        | st.text(max_size=30)
        | st.sampled_from(secrets)
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
        max_leaves=8,
    )


def _plausible(field: str, secrets: list[str]) -> st.SearchStrategy[Any]:
    """Values that pass the shape checks often enough to reach the library underneath."""
    specific: dict[str, st.SearchStrategy[Any]] = {
        "organizationId": st.sampled_from([ORG_A, ORG_B, "org-z", "", "bad org"]),
        "apiKey": st.sampled_from([*secrets, "sk-ant-api03-" + "f" * 40, "nope"]),
        "tier": st.sampled_from(["free", "pro", "enterprise", "gold"]),
        "name": st.text(max_size=40),
        "message": st.text(max_size=60) | st.sampled_from(secrets),
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "assistant", "system"]),
                    "content": st.text(max_size=30) | st.sampled_from(secrets),
                }
            ),
            max_size=3,
        ),
        "strategy": st.sampled_from(["least_loaded", "round_robin", "weighted", "priority", "sticky", "x"]),
        "maxTokens": st.integers(min_value=-5, max_value=200_000),
        "timeoutSeconds": st.floats(min_value=-1, max_value=5),
        "wait": st.booleans(),
        "model": st.sampled_from(["claude-sonnet-5-5", "claude-haiku-4-5", "x" * 120]),
    }
    return specific.get(field, st.integers(min_value=-10, max_value=2**64)) | _json_values(secrets)


_REQUIRED_VALID: dict[str, st.SearchStrategy[Any]] = {
    "organizationId": st.sampled_from([ORG_A, ORG_B]),
    "name": st.text(min_size=1, max_size=30) | st.from_regex(r"[a-z][a-z0-9-]{2,20}", fullmatch=True),
    "tier": st.sampled_from(["free", "pro"]),
    "message": st.text(min_size=1, max_size=60),
}


_FRESH_KEYS = st.text(alphabet="abcdefghijk0123456789", min_size=40, max_size=40).map(
    lambda s: "sk-ant-api03-" + s
)


def _body(model: type[BaseModel], secrets: list[str]) -> st.SearchStrategy[Any]:
    """Mostly bodies with the required fields right (so the library underneath is reached), some
    with any subset of fields, some any JSON at all."""
    names = [to_camel(name) for name in model.model_fields]
    fields = {name: _plausible(name, secrets) for name in names}
    required = [to_camel(n) for n, f in model.model_fields.items() if f.is_required()]
    if model is ExecuteBody:
        required = ["organizationId", "message"]
    valid_first: dict[str, st.SearchStrategy[Any]] = {}
    for name in required:
        if name in _REQUIRED_VALID:
            valid_first[name] = _REQUIRED_VALID[name]
        elif name == "apiKey":
            valid_first[name] = _FRESH_KEYS | st.sampled_from(secrets)
        else:
            valid_first[name] = fields[name]
    optional = {name: strategy for name, strategy in fields.items() if name not in valid_first}
    return st.one_of(
        st.fixed_dictionaries(valid_first),
        st.fixed_dictionaries(valid_first, optional=optional),
        st.fixed_dictionaries({}, optional=fields),
        _json_values(secrets),
    )


def _request(data: st.DataObject, api: ApiServer, world: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    routes = sorted(r for r in iter_routes(api.app))
    method, template = data.draw(st.sampled_from(routes), label="route")
    path = template
    for param in ("{account_id}", "{execution_id}"):
        if param in path:
            value = data.draw(
                st.sampled_from([*world["ids"], world["execution"]]) | st.text(min_size=1, max_size=40)
                if data.draw(st.integers(0, 3), label="random id") == 0
                else st.sampled_from(world["ids"] if param == "{account_id}" else [world["execution"]]),
                label=param,
            )
            path = path.replace(param, quote(value, safe=""))
    kwargs: dict[str, Any] = {
        "params": data.draw(
            st.dictionaries(st.sampled_from(_QUERY), st.text(max_size=20) | st.sampled_from([ORG_A, ORG_B])),
            label="query",
        )
    }
    model = _BODIES.get((method, template))
    if model is not None:
        body = data.draw(_body(model, world["secrets"]), label="body")
        kwargs["content"] = json.dumps(body).encode()
        kwargs["headers"] = {"Content-Type": "application/json"}
    kwargs.setdefault("headers", {})["Authorization"] = (
        "Bearer " + api.tokens[data.draw(st.sampled_from(["admin", "a", "b"]), label="token")]
    )
    return method, path, kwargs


def _check(response: httpx.Response, body: str, secrets: list[str], where: str) -> None:
    assert response.status_code != 500 and response.status_code < 600, (
        f"{where}: {response.status_code} {body[:500]}"
    )
    for secret in secrets:
        assert secret not in body, f"{where}: a key leaked"
    assert not KEY_PATTERN.search(body), f"{where}: something key-shaped leaked"
    if response.status_code >= 400:
        error = json.loads(body)["error"]
        assert error["type"] and error["message"], where


def _fuzz_once(data: st.DataObject, api: ApiServer, world: dict[str, Any]) -> None:
    method, path, kwargs = _request(data, api, world)
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        with client.stream(method, path, **kwargs) as response:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                body = ""  # an open event stream: its status is the answer; its events are tested elsewhere
            else:
                body = response.read().decode()
        _check(response, body, world["secrets"], f"{method} {path}")


def _fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
    )


@_fuzz(60)
@given(data=st.data())
def test_fuzz_every_route(api: ApiServer, world: dict[str, Any], data: st.DataObject) -> None:
    _fuzz_once(data, api, world)


@pytest.mark.slow
@_fuzz(200)
@given(data=st.data())
def test_fuzz_every_route_longer(api: ApiServer, world: dict[str, Any], data: st.DataObject) -> None:
    _fuzz_once(data, api, world)


def test_openapi_schema_is_served(api: ApiServer) -> None:
    schema = api.client("a").get("/openapi.json").json()
    assert (
        "/api/orchestrator/execute" in schema["paths"]
        and "bearerAuth" in schema["components"]["securitySchemes"]
    )
    create = schema["components"]["schemas"]["AccountCreateBody"]["properties"]
    assert {"organizationId", "apiKey", "requestsPerMinute", "capacityGroup"} <= set(create)
