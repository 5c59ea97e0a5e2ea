"""What a client of the HTTP API relies on without reading the code: one case convention (camelCase)
in every response, nested members included; a body refused for its Content-Type says which header
to send; an unknown member names the members the body takes; and the README names every member of
the registration body."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from claude_pool.http.schemas import AccountCreateBody, AttemptDetailOut, accepted_fields
from claude_pool.pool.models import AttemptRecord
from tests.http.harness import ORG_A, ApiServer

ROOT = Path(__file__).resolve().parents[2]
CAMEL = re.compile(r"[a-z][a-zA-Z0-9]*")
ACCOUNTS = "/api/v1/admin/claude-accounts"
EXECUTE = "/api/orchestrator/execute"


def snake_members(value: Any, path: str = "$") -> list[str]:
    """The path of every object member, at any depth, not named in camelCase."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not CAMEL.fullmatch(key):
                found.append(f"{path}.{key}")
            found += snake_members(item, f"{path}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found += snake_members(item, f"{path}[{n}]")
    return found


@pytest.fixture(scope="module")
def account(api: ApiServer) -> dict[str, Any]:
    return api.register(api.client("admin"), ORG_A, api.sim.keys[0].key, "conventions", requestsPerMinute=900)


def test_every_response_is_camel_case_nested_members_included(
    api: ApiServer, account: dict[str, Any]
) -> None:
    admin = api.client("admin")
    execution = admin.post(EXECUTE, json={"message": "hi", "organizationId": ORG_A, "userId": "u-1"})
    assert execution.status_code == 200, execution.text
    answers = {
        "registered": account,
        "executed": execution.json(),
        "execution": admin.get(f"/api/orchestrator/executions/{execution.json()['executionId']}").json(),
        "accounts": admin.get(ACCOUNTS).json(),
        "alerts": admin.get("/api/v1/admin/quota-alerts").json(),
        "health": admin.get("/health").json(),
        "not found": admin.get(f"{ACCOUNTS}/no-such-id").json(),
        "invalid": admin.post(EXECUTE, json={"organizationId": ORG_A}).json(),
    }
    assert {name: snake_members(body) for name, body in answers.items()} == {name: [] for name in answers}
    # The members that were snake_case: an execution's attempts and an account's overrides.
    (attempt,) = execution.json()["attemptDetails"]
    assert attempt["accountId"] == account["id"] and attempt["statusCode"] == 200
    assert attempt["outcome"] == "success" and attempt["requestId"] and attempt["latencyMs"] > 0
    assert account["limitOverrides"] == {"requestsPerMinute": 900}


def test_attempt_details_show_every_member_the_pool_records() -> None:
    # A member added to AttemptRecord must reach the API too (in camelCase), not vanish.
    assert set(AttemptRecord.model_fields) <= set(AttemptDetailOut.model_fields)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-content-type"),
        pytest.param({"Content-Type": "text/plain"}, id="text-plain"),
        pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, id="form"),
    ],
)
def test_a_body_without_a_json_content_type_says_which_header_to_send(
    api: ApiServer, headers: dict[str, str]
) -> None:
    body = json.dumps({"message": "hi", "organizationId": ORG_A}).encode()
    response = api.client("admin").post(EXECUTE, content=body, headers=headers)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["type"] == "unsupported_media_type"
    assert "send Content-Type: application/json" in error["message"]
    assert "dictionary" not in error["message"]
    sent = headers.get("Content-Type")
    assert (sent or "no Content-Type header") in error["message"]


def test_a_json_content_type_with_parameters_is_json(api: ApiServer) -> None:
    body = json.dumps({"organizationId": ORG_A}).encode()  # no message: a 422, not a 415
    response = api.client("admin").post(
        EXECUTE, content=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 422 and response.json()["error"]["field"] == "messages"


def test_a_route_without_a_body_needs_no_content_type(api: ApiServer, account: dict[str, Any]) -> None:
    admin = api.client("admin")
    assert admin.post(f"{ACCOUNTS}/{account['id']}/disable").status_code == 200
    assert admin.post(f"{ACCOUNTS}/{account['id']}/enable").status_code == 200


@pytest.mark.parametrize(
    ("member", "meant"),
    [
        pytest.param("rpm", "requestsPerMinute", id="rpm"),
        pytest.param("itpm", "inputTokensPerMinute", id="itpm"),
        pytest.param("requests_per_minut", "requestsPerMinute", id="a-typo"),
        pytest.param("max_inflight", "maxInFlight", id="near-snake-case"),
    ],
)
def test_an_unknown_member_names_the_one_meant_and_every_accepted_one(
    api: ApiServer, member: str, meant: str
) -> None:
    body = {
        "organizationId": ORG_A,
        "name": "x",
        "apiKey": "sk-ant-api03-" + "U" * 40,
        "tier": "pro",
        member: 50,
    }
    response = api.client("admin").post(ACCOUNTS, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == member
    assert f"did you mean {meant}?" in error["message"]
    assert all(name in error["message"] for name in accepted_fields(AccountCreateBody))


def test_an_unknown_member_of_a_nested_object_names_its_place(api: ApiServer) -> None:
    body = {"organizationId": ORG_A, "messages": [{"role": "user", "content": "hi", "contnet": "x"}]}
    response = api.client("admin").post(EXECUTE, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "messages.0.contnet" and "did you mean content?" in error["message"]


def _readme_registration_members() -> dict[str, str]:
    """The README's table of the registration body: member -> its default column."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### HTTP API", 1)[1].split("\n### ", 1)[0]
    table = section.split("| member | meaning | default |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| `")]
    return {cells[1].strip().strip("`"): cells[3].strip() for cells in rows}


def test_the_readme_names_every_member_of_the_registration_body() -> None:
    documented = _readme_registration_members()
    assert sorted(documented) == sorted(accepted_fields(AccountCreateBody))
    assert all(documented.values()), "every member says its default (or that it is required)"
