"""The drop-in Anthropic endpoint, driven by the real ``anthropic`` SDK configured with nothing but
``base_url`` and the pool token, against ``claude-pool serve``'s app in front of the simulator.

Organization A has two accounts (simulator keys 0 and 1), organization B one (key 2); the pool's
tokens are scoped to A, to B, to both, or to every organization.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from claude_pool.simulator import Limits
from tests.http.harness import ORG_A, ORG_B, ApiServer

A_KEYS, B_KEYS = (0, 1), (2,)


@pytest.fixture(scope="module", autouse=True)
def accounts(api: ApiServer) -> None:
    with httpx.Client(
        base_url=api.base_url, headers={"Authorization": f"Bearer {api.tokens['admin']}"}
    ) as admin:
        for index in A_KEYS:
            api.register(admin, ORG_A, api.sim.keys[index].key, f"gw-a{index}")
        for index in B_KEYS:
            api.register(admin, ORG_B, api.sim.keys[index].key, f"gw-b{index}")


@pytest.fixture(autouse=True)
def no_faults(api: ApiServer) -> Iterator[None]:
    api.sim.clear_faults()
    yield
    api.sim.clear_faults()


def client(api: ApiServer, who: str = "a", *, bearer: bool = False, **options: Any) -> anthropic.Anthropic:
    token = api.tokens[who]
    auth = {"auth_token": token, "api_key": None} if bearer else {"api_key": token}
    return anthropic.Anthropic(base_url=api.base_url, max_retries=0, **auth, **options)  # type: ignore[arg-type]


def served(api: ApiServer, indexes: tuple[int, ...]) -> int:
    return sum(api.sim.state.counters[api.sim.keys[i].name]["served"] for i in indexes)


def execution(api: ApiServer, execution_id: str) -> dict[str, Any]:
    with api.client() as admin:
        response = admin.get(f"/api/orchestrator/executions/{execution_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


HELLO: list[Any] = [{"role": "user", "content": "hello there"}]


@pytest.mark.parametrize("bearer", [False, True], ids=["x-api-key", "bearer"])
def test_a_message_through_the_pool_with_either_auth_header(api: ApiServer, bearer: bool) -> None:
    before = served(api, A_KEYS)
    raw = client(api, bearer=bearer).messages.with_raw_response.create(
        model="claude-sonnet-5-5", max_tokens=32, messages=HELLO
    )
    message = raw.parse()
    assert message.type == "message" and message.content[0].type == "text"
    assert message.usage.output_tokens > 0
    assert raw.headers["request-id"].startswith("req_")  # upstream's own id, as it came
    assert served(api, A_KEYS) == before + 1
    row = execution(api, raw.headers["x-claude-pool-execution-id"])
    assert row["status"] == "succeeded"
    assert row["organizationId"] == ORG_A


def test_the_async_client(api: ApiServer) -> None:
    async def ask() -> anthropic.types.Message:
        async with anthropic.AsyncAnthropic(
            base_url=api.base_url, api_key=api.tokens["a"], max_retries=0
        ) as c:
            return await c.messages.create(model="claude-sonnet-5-5", max_tokens=16, messages=HELLO)

    message = asyncio.run(ask())
    assert message.role == "assistant" and message.stop_reason in ("end_turn", "max_tokens")


def test_a_stream_relayed_event_by_event(api: ApiServer) -> None:
    with client(api).messages.stream(model="claude-sonnet-5-5", max_tokens=64, messages=HELLO) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts and "".join(texts) == final.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == len(texts) or final.usage.output_tokens > 0
    assert final.stop_reason in ("end_turn", "max_tokens")


def test_count_tokens(api: ApiServer) -> None:
    counted = client(api).messages.count_tokens(model="claude-sonnet-5-5", messages=HELLO)
    assert counted.input_tokens > 0


def test_models_listed_paged_and_retrieved(api: ApiServer) -> None:
    sdk = client(api)
    everything = [m.id for m in sdk.models.list()]
    assert "claude-sonnet-5-5" in everything
    paged = [m.id for m in sdk.models.list(limit=2)]  # the SDK follows has_more/last_id page by page
    assert paged == everything
    assert sdk.models.retrieve("claude-sonnet-5-5").id == "claude-sonnet-5-5"
    with pytest.raises(anthropic.NotFoundError):
        sdk.models.retrieve("no-such-model")


TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def test_tool_use_round_trip(api: ApiServer) -> None:
    sdk = client(api)
    forced: Any = {"type": "tool", "name": "get_weather"}
    asked = sdk.messages.create(
        model="claude-sonnet-5-5", max_tokens=200, messages=HELLO, tools=TOOLS, tool_choice=forced
    )
    assert asked.stop_reason == "tool_use"
    call = next(b for b in asked.content if b.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input, dict) and "city" in call.input
    answer = sdk.messages.create(
        model="claude-sonnet-5-5",
        max_tokens=64,
        tools=TOOLS,
        messages=[
            *HELLO,
            {"role": "assistant", "content": [b.model_dump() for b in asked.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            },
        ],
    )
    assert answer.content[0].type == "text"
    with sdk.messages.stream(
        model="claude-sonnet-5-5", max_tokens=200, messages=HELLO, tools=TOOLS, tool_choice=forced
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "tool_use" and streamed.content[0].type == "tool_use"


def test_the_body_and_headers_go_upstream_as_the_client_sent_them(api: ApiServer) -> None:
    """Fields the pool does not model (system blocks, metadata, stop sequences, a field newer than
    this code) and the version and beta headers arrive upstream unchanged."""
    body = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 16,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": HELLO,
        "metadata": {"user_id": "user-42"},
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "a_field_from_the_future": {"nested": [1, 2]},
    }
    headers = {
        "x-api-key": api.tokens["b"],
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "future-1,other-2",
    }
    with httpx.Client(base_url=api.base_url, headers=headers) as http:
        response = http.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    arrived = api.sim.last_request(api.sim.keys[B_KEYS[0]].name)
    assert arrived["body"] == body
    assert arrived["headers"] == {"anthropic-version": "2023-06-01", "anthropic-beta": "future-1,other-2"}
    assert arrived["request_id"] == response.headers["request-id"]
    row = execution(api, response.headers["x-claude-pool-execution-id"])
    assert row["userId"] == "user-42"


def test_a_bad_request_comes_back_as_upstream_said_without_fail_over(api: ApiServer) -> None:
    before = {i: api.sim.state.counters[api.sim.keys[i].name]["rejected_invalid"] for i in A_KEYS}
    with pytest.raises(anthropic.NotFoundError) as caught:
        client(api).messages.create(model="not-a-claude-model", max_tokens=8, messages=HELLO)
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert "not-a-claude-model" in caught.value.body["error"]["message"]  # type: ignore[index]
    after = {i: api.sim.state.counters[api.sim.keys[i].name]["rejected_invalid"] for i in A_KEYS}
    assert sum(after.values()) - sum(before.values()) == 1  # one account asked, never a second


def test_a_body_without_max_tokens_is_refused_in_anthropic_words(api: ApiServer) -> None:
    with httpx.Client(base_url=api.base_url, headers={"x-api-key": api.tokens["a"]}) as http:
        response = http.post("/v1/messages", json={"model": "claude-sonnet-5-5", "messages": HELLO})
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


def test_a_wrong_token_is_an_authentication_error(api: ApiServer) -> None:
    sdk = anthropic.Anthropic(base_url=api.base_url, api_key="not-a-pool-token-at-all", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk.messages.create(model="claude-sonnet-5-5", max_tokens=8, messages=HELLO)
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_organizations_never_reach_each_others_accounts(api: ApiServer) -> None:
    a_before, b_before = served(api, A_KEYS), served(api, B_KEYS)
    for _ in range(4):
        client(api, "b").messages.create(model="claude-sonnet-5-5", max_tokens=8, messages=HELLO)
    assert served(api, B_KEYS) == b_before + 4 and served(api, A_KEYS) == a_before
    # B's token may not name A, and A's accounts serve nothing for it.
    naming_a = client(api, "b", default_headers={"x-claude-pool-organization": ORG_A})
    with pytest.raises(anthropic.PermissionDeniedError):
        naming_a.messages.create(model="claude-sonnet-5-5", max_tokens=8, messages=HELLO)
    assert served(api, A_KEYS) == a_before


def test_a_token_for_several_organizations_names_one(api: ApiServer) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(api, "ab").messages.create(model="claude-sonnet-5-5", max_tokens=8, messages=HELLO)
    assert "x-claude-pool-organization" in str(caught.value)
    b_before = served(api, B_KEYS)
    named = client(api, "ab", default_headers={"x-claude-pool-organization": ORG_B})
    named.messages.create(model="claude-sonnet-5-5", max_tokens=8, messages=HELLO)
    assert served(api, B_KEYS) == b_before + 1


def test_a_stream_whose_account_fails_before_the_first_byte_is_served_by_another(api: ApiServer) -> None:
    failing, healthy = (api.sim.keys[i] for i in A_KEYS)
    api.sim.add_fault({"kind": "error", "status": 500, "targets": [failing.name]})
    before = api.sim.state.counters[healthy.name]["served"]
    for _ in range(3):  # whichever account is chosen first, every stream ends served
        with client(api).messages.stream(model="claude-sonnet-5-5", max_tokens=16, messages=HELLO) as stream:
            final = stream.get_final_message()
        assert final.stop_reason in ("end_turn", "max_tokens")
    assert api.sim.state.counters[healthy.name]["served"] == before + 3


def test_a_stream_that_fails_after_its_first_byte_ends_with_an_error_event(api: ApiServer) -> None:
    api.sim.add_fault(
        {"kind": "stream_error", "targets": [api.sim.keys[i].name for i in A_KEYS], "after_tokens": 2}
    )
    with httpx.Client(base_url=api.base_url, headers={"x-api-key": api.tokens["a"]}, timeout=30) as http:
        body = {"model": "claude-sonnet-5-5", "max_tokens": 32, "stream": True, "messages": HELLO}
        with http.stream("POST", "/v1/messages", json=body) as response:
            assert response.status_code == 200
            execution_id = response.headers["x-claude-pool-execution-id"]
            text = response.read().decode()
    assert "event: message_start" in text and "content_block_delta" in text
    assert text.rstrip().split("\n\n")[-1].startswith("event: error")
    assert "message_stop" not in text
    sdk = client(api)
    with (
        pytest.raises(anthropic.APIStatusError),
        sdk.messages.stream(model="claude-sonnet-5-5", max_tokens=32, messages=HELLO) as stream,
    ):
        stream.get_final_message()
    row = _finished(api, execution_id)
    assert row["status"] == "failed"


def _finished(api: ApiServer, execution_id: str) -> dict[str, Any]:
    """The execution once its row is written (the stream's last event goes out before it is)."""
    import time

    deadline = time.monotonic() + 10
    while True:
        row = execution(api, execution_id)
        if row["status"] not in ("pending", "running") or time.monotonic() > deadline:
            return row
        time.sleep(0.05)  # a bounded poll of the row the server task writes after the stream


def test_when_no_account_has_capacity_the_client_gets_429_with_retry_after(api: ApiServer) -> None:
    """An account of one request a minute, used: the next request would wait longer than the
    pool's queue bound, so it is refused at once, in the words the SDKs turn into RateLimitError."""
    key = api.sim.keys[3]
    api.sim.set_limits(key.org, Limits(rpm=1, itpm=100_000, otpm=100_000))  # upstream says the same
    with api.client() as admin:
        account = api.register(admin, "org-tight", key.key, "gw-tight", requestsPerMinute=1)
    tight = client(api, "admin", default_headers={"x-claude-pool-organization": "org-tight"})
    tight.messages.create(model="claude-sonnet-5-5", max_tokens=8, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as caught:
        tight.messages.create(model="claude-sonnet-5-5", max_tokens=8, messages=HELLO)
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert account["name"] == "gw-tight"


def test_when_every_account_is_overloaded_the_client_gets_529(api: ApiServer) -> None:
    api.sim.add_fault({"kind": "overloaded", "targets": [api.sim.keys[i].name for i in B_KEYS]})
    with pytest.raises(anthropic.OverloadedError) as caught:
        client(api, "b").messages.create(model="claude-sonnet-5-5", max_tokens=8, messages=HELLO)
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_an_unreachable_upstream_is_named_as_the_cause(api: ApiServer) -> None:
    """Every account's connection reset: the caller is told so, not that every account was
    "already tried" (what it said before, with the cause only in the server's log)."""
    api.sim.add_fault({"kind": "reset", "targets": [api.sim.keys[i].name for i in B_KEYS]})
    with pytest.raises(anthropic.InternalServerError) as caught:
        client(api, "b").messages.create(model="claude-sonnet-5-5", max_tokens=8, messages=HELLO)
    assert caught.value.status_code == 502
    assert "connection" in str(caught.value) and "already tried" not in str(caught.value)
    with api.client("b") as pool_api:
        response = pool_api.post(
            "/api/orchestrator/execute", json={"organizationId": ORG_B, "message": "hello", "maxTokens": 8}
        )
    assert response.status_code >= 500
    assert "connection" in response.text and "already tried" not in response.text
