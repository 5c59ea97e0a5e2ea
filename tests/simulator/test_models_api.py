"""The Models API (``GET /v1/models``, ``GET /v1/models/{id}``) through the real ``anthropic`` client."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import anthropic
import pytest

from claude_pool.simulator import DEFAULT_MODELS, RunningSimulator, Scenario

from .conftest import HELLO, MODEL


def test_list_pages_forward_through_every_model(anthropic_sim: RunningSimulator,
                                                client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim)
    first = client.models.list(limit=5)
    assert [m.id for m in first.data] == list(DEFAULT_MODELS[:5])
    assert first.has_more is True
    assert (first.first_id, first.last_id) == (DEFAULT_MODELS[0], DEFAULT_MODELS[4])
    # The client follows last_id with after_id until has_more is false: 16 models, pages of 5.
    assert [m.id for m in client.models.list(limit=5)] == list(DEFAULT_MODELS)
    assert "claude-sonnet-5-5" in DEFAULT_MODELS  # the pool's default model is listed
    sent = [dict(parse_qsl(r["query"])) for r in anthropic_sim.requests("acct-1")]
    assert sent[1:] == [{"limit": "5"}, *({"limit": "5", "after_id": DEFAULT_MODELS[i]} for i in (4, 9, 14))]
    assert anthropic_sim.stats().key("acct-1")["models"] == 5


def test_list_pages_backward_with_before_id(anthropic_sim: RunningSimulator,
                                            client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim)
    page = client.models.list(before_id=DEFAULT_MODELS[10], limit=3)
    assert [m.id for m in page.data] == list(DEFAULT_MODELS[7:10])
    assert page.has_more is True
    # Backwards, each page is the one just before the previous page's first_id.
    ids = [m.id for m in client.models.list(before_id=DEFAULT_MODELS[10], limit=3)]
    assert ids == [*DEFAULT_MODELS[7:10], *DEFAULT_MODELS[4:7], *DEFAULT_MODELS[1:4], DEFAULT_MODELS[0]]


def test_list_defaults_and_filters(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim)
    page = client.models.list()
    assert [m.id for m in page.data] == list(DEFAULT_MODELS)  # the default limit of 20 holds them all
    assert page.has_more is False
    for model in page.data:
        assert model.type == "model" and model.lifecycle == "active"
        assert model.display_name.startswith("Claude ")
        assert isinstance(model.created_at, datetime)
    created = [m.created_at for m in page.data]
    assert created == sorted(created, reverse=True)  # newest first, as upstream lists them
    retired = client.models.list(lifecycle=["retired"])
    assert retired.data == [] and retired.has_more is False and retired.first_id is None
    with pytest.raises(anthropic.BadRequestError) as info:
        client.models.list(limit=0)
    assert info.value.type == "invalid_request_error"


def test_retrieve(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim)
    model = client.models.retrieve("claude-sonnet-5-5")
    assert (model.id, model.display_name, model.type) == ("claude-sonnet-5-5", "Claude Sonnet 5.5", "model")
    assert model.line == "sonnet"
    # An alias (a dated id without its date) resolves to the dated model, as upstream does.
    haiku = client.models.retrieve("claude-haiku-4-5")
    assert haiku.id == "claude-haiku-4-5-20251001" and haiku.display_name == "Claude Haiku 4.5"
    assert haiku.created_at.date().isoformat() == "2025-10-01"
    with pytest.raises(anthropic.NotFoundError) as info:
        client.models.retrieve("claude-unknown-1")
    err = info.value
    assert err.status_code == 404 and err.type == "not_found_error"
    assert isinstance(err.body, dict) and err.body["request_id"] == err.request_id


def test_configured_models_are_the_list(anthropic_sim_factory: Callable[..., RunningSimulator],
                                        client_for: Callable[..., Any]) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, models=("claude-test-2", "claude-test-1")))
    client = client_for(sim)
    assert [m.id for m in client.models.list()] == ["claude-test-2", "claude-test-1"]
    assert client.models.retrieve("claude-test-1").display_name == "Claude Test 1"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-sonnet-5-5")


def test_keys_are_checked(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    unknown = "sk-ant-api03-" + "x" * 86 + "AA"
    with pytest.raises(anthropic.AuthenticationError) as info:
        client_for(anthropic_sim, unknown).models.list()
    assert info.value.type == "authentication_error"
    assert anthropic_sim.stats().unauthenticated == 1
    anthropic_sim.revoke("acct-2", status=403)
    with pytest.raises(anthropic.PermissionDeniedError):
        client_for(anthropic_sim, "acct-2").models.retrieve(MODEL)
    # x-api-key works as well as the 2.x client's bearer token.
    client = anthropic.Anthropic(
        api_key="unused-placeholder", base_url=anthropic_sim.base_url, max_retries=0,
        default_headers={"x-api-key": anthropic_sim.key("acct-3").key, "Authorization": anthropic.Omit()},
    )
    with client:
        assert client.models.retrieve(MODEL).id == MODEL


def test_not_rate_limited_and_not_message_traffic(anthropic_sim_factory: Callable[..., RunningSimulator],
                                                   client_for: Callable[..., Any]) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, rpm=1))
    client = client_for(sim)
    client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)  # the one request of the minute
    for _ in range(3):
        assert client.models.list(limit=1).data[0].id == DEFAULT_MODELS[0]
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    counts = sim.stats().key("acct-1")
    assert (counts["models"], counts["received"], counts["served"]) == (3, 2, 1)
    assert counts["rejected_rate_limit_requests"] == 1


async def test_async_client(anthropic_sim: RunningSimulator) -> None:
    async with anthropic.AsyncAnthropic(
        api_key=anthropic_sim.key("acct-1").key, base_url=anthropic_sim.base_url, max_retries=0
    ) as client:
        ids = [m.id async for m in client.models.list(limit=7)]
        model = await client.models.retrieve("claude-opus-4-8")
        with pytest.raises(anthropic.NotFoundError):
            await client.models.retrieve("claude-nothing")
    assert ids == list(DEFAULT_MODELS)
    assert model.display_name == "Claude Opus 4.8"
    assert anthropic_sim.stats().key("acct-1")["models"] == 3 + 2
