"""The real ``anthropic`` 2.x client against the simulator: success, streams, and every error row."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anthropic
import pytest
from anthropic.types.shared.enforced_spend_limit_reached_error import EnforcedSpendLimitReachedError
from anthropic.types.shared.ramp_limit_exceeded_error import RampLimitExceededError

from claude_pool.simulator import OutputSpec, RunningSimulator, Scenario, count_input_tokens

from .conftest import HELLO, MODEL

RATELIMIT_HEADERS = [
    f"anthropic-ratelimit-{metric}-{field}"
    for metric in ("requests", "input-tokens", "output-tokens", "tokens")
    for field in ("limit", "remaining", "reset")
]


def test_message_with_usage_and_headers(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim)
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=HELLO)
    message = raw.parse()
    assert isinstance(message, anthropic.types.Message)
    assert message.usage.input_tokens == count_input_tokens({"messages": HELLO})
    assert 1 <= message.usage.output_tokens <= 64
    assert len(message.content[0].text) == 4 * message.usage.output_tokens
    for header in RATELIMIT_HEADERS:
        assert raw.headers[header], header
    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["anthropic-organization-id"] == anthropic_sim.key("acct-1").org
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "10000"
    assert raw.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    # Token remaining values are rounded down to the thousand by default.
    assert int(raw.headers["anthropic-ratelimit-input-tokens-remaining"]) % 1000 == 0


def test_x_api_key_and_old_version_are_accepted(anthropic_sim: RunningSimulator) -> None:
    client = anthropic.Anthropic(
        api_key="unused-placeholder", base_url=anthropic_sim.base_url, max_retries=0,
        default_headers={"x-api-key": anthropic_sim.keys[0].key, "anthropic-version": "2023-06-01",
                         "Authorization": anthropic.Omit()},
    )
    with client:
        assert client.messages.create(model=MODEL, max_tokens=8, messages=HELLO).usage.output_tokens >= 1


def test_same_request_same_answer(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim)
    a = client.messages.create(model=MODEL, max_tokens=500, messages=HELLO)
    b = client.messages.create(model=MODEL, max_tokens=500, messages=HELLO)
    assert a.usage.output_tokens == b.usage.output_tokens
    assert a.id != b.id


def test_stream_events_in_order_and_text_assembles(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim)
    events = list(client.messages.create(model=MODEL, max_tokens=100, messages=HELLO, stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}
    with client.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text
    assert len(text) == 4 * final.usage.output_tokens
    assert final.usage.input_tokens == count_input_tokens({"messages": HELLO})
    assert anthropic_sim.stats().key("acct-1")["output_tokens"] == 2 * final.usage.output_tokens


async def test_async_client_plain_and_stream(anthropic_sim: RunningSimulator) -> None:
    async with anthropic.AsyncAnthropic(
        api_key=anthropic_sim.keys[1].key, base_url=anthropic_sim.base_url, max_retries=0
    ) as client:
        raw = await client.messages.with_raw_response.create(model=MODEL, max_tokens=32, messages=HELLO)
        assert raw.headers["anthropic-ratelimit-requests-remaining"]
        message = await raw.parse()
        async with client.messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
            final = await stream.get_final_message()
        assert 1 <= message.usage.output_tokens <= 32
        assert final.content[0].text == "the quick brown fox jumps over the lazy dog"[: 4 * final.usage.output_tokens]


def test_count_tokens(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    body = {"system": "be brief", "messages": HELLO}
    counted = client_for(anthropic_sim).messages.count_tokens(model=MODEL, **body)
    assert counted.input_tokens == count_input_tokens(body)
    assert anthropic_sim.stats().total["count_tokens"] == 1


# ---- the error table ------------------------------------------------------------------------------


def _expect(sim: RunningSimulator, client: Any, exc_type: type[Exception], status: int, **kw: Any) -> Any:
    params = {"model": MODEL, "max_tokens": 16, "messages": HELLO, **kw}
    with pytest.raises(exc_type) as info:
        client.messages.create(**params)
    err = info.value
    assert isinstance(err, anthropic.APIStatusError)
    assert err.status_code == status
    assert err.request_id is not None and err.request_id.startswith("req_")
    assert isinstance(err.body, dict) and err.body["type"] == "error"
    assert err.body["request_id"] == err.request_id
    return err


def test_400_invalid_request(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    err = _expect(anthropic_sim, client_for(anthropic_sim), anthropic.BadRequestError, 400, messages=[])
    assert err.type == "invalid_request_error"


def test_401_unknown_key(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    unknown = "sk-ant-api03-" + "x" * 86 + "AA"
    err = _expect(anthropic_sim, client_for(anthropic_sim, unknown), anthropic.AuthenticationError, 401)
    assert err.type == "authentication_error"
    assert anthropic_sim.stats().unauthenticated == 1


@pytest.mark.parametrize(("status", "exc_type", "etype"), [
    (401, anthropic.AuthenticationError, "authentication_error"),
    (403, anthropic.PermissionDeniedError, "permission_error"),
])
def test_revoked_key(anthropic_sim: RunningSimulator, client_for: Callable[..., Any], status: int,
                     exc_type: type[Exception], etype: str) -> None:
    client = client_for(anthropic_sim)
    client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    anthropic_sim.revoke("acct-1", status=status)
    assert _expect(anthropic_sim, client, exc_type, status).type == etype
    anthropic_sim.restore("acct-1")
    client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    assert anthropic_sim.stats().key("acct-1")["rejected_auth"] == 1


def test_402_billing(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    anthropic_sim.set_faults([{"kind": "billing"}])
    assert _expect(anthropic_sim, client_for(anthropic_sim), anthropic.PaymentRequiredError, 402).type == "billing_error"


def test_404_unknown_model_and_path(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim)
    assert _expect(anthropic_sim, client, anthropic.NotFoundError, 404, model="gpt-4o").type == "not_found_error"
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.batches.list()  # a route the simulator does not serve
    assert info.value.request_id


def test_413_too_large(anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any]) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, max_body_bytes=2000))
    big = [{"role": "user", "content": "x" * 5000}]
    err = _expect(sim, client_for(sim), anthropic.ContentTooLargeError, 413, messages=big)
    assert err.type == "request_too_large"


def test_429_rate_limit_has_retry_after(anthropic_sim_factory: Callable[..., RunningSimulator],
                                       client_for: Callable[..., Any]) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, rpm=1))
    client = client_for(sim)
    client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    err = _expect(sim, client, anthropic.RateLimitError, 429)
    assert err.type == "rate_limit_error" and err.error_code is None
    assert 1 <= int(err.response.headers["retry-after"]) <= 60
    assert err.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert sim.stats().key("acct-1")["rejected_rate_limit_requests"] == 1


def test_429_spend_cap_has_no_retry_after(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    anthropic_sim.set_faults([{"kind": "spend_cap", "targets": ["acct-1"]}])
    err = _expect(anthropic_sim, client_for(anthropic_sim), EnforcedSpendLimitReachedError, 429)
    assert isinstance(err, anthropic.RateLimitError)
    assert err.error_code == "enforced_spend_limit_reached"
    assert "retry-after" not in err.response.headers
    client_for(anthropic_sim, "acct-2").messages.create(model=MODEL, max_tokens=8, messages=HELLO)


def test_spend_cap_by_served_tokens(anthropic_sim_factory: Callable[..., RunningSimulator],
                                   client_for: Callable[..., Any]) -> None:
    sc = Scenario.uniform(accounts=1)
    sc = sc.with_(orgs=(sc.orgs[0].__class__(**{**sc.orgs[0].__dict__, "spend_cap_tokens": 30}),))
    sim = anthropic_sim_factory(sc.with_(output=OutputSpec(mode="fixed", tokens=10)))
    client = client_for(sim)
    client.messages.create(model=MODEL, max_tokens=50, messages=HELLO)  # 11 in + 10 out
    client.messages.create(model=MODEL, max_tokens=50, messages=HELLO)  # 42 >= 30 now
    _expect(sim, client, EnforcedSpendLimitReachedError, 429)
    assert sim.stats().total["rejected_spend_cap"] == 1


def test_429_ramp(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    anthropic_sim.set_faults([{"kind": "ramp", "retry_after": 7}])
    err = _expect(anthropic_sim, client_for(anthropic_sim), RampLimitExceededError, 429)
    assert err.error_code == "ramp_limit_exceeded"
    assert err.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(("status", "exc_type", "etype"), [
    (500, anthropic.InternalServerError, "api_error"),
    (503, anthropic.ServiceUnavailableError, "api_error"),
    (504, anthropic.GatewayTimeoutError, "timeout_error"),
])
def test_5xx(anthropic_sim: RunningSimulator, client_for: Callable[..., Any], status: int,
             exc_type: type[Exception], etype: str) -> None:
    anthropic_sim.set_faults([{"kind": "error", "status": status}])
    assert _expect(anthropic_sim, client_for(anthropic_sim), exc_type, status).type == etype
    assert anthropic_sim.stats().total[f"fault_{status}"] == 1


def test_529_overloaded(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    anthropic_sim.set_faults([{"kind": "overloaded"}])
    err = _expect(anthropic_sim, client_for(anthropic_sim), anthropic.OverloadedError, 529)
    assert isinstance(err, anthropic.InternalServerError)
    assert err.type == "overloaded_error"


def test_connection_reset(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    anthropic_sim.set_faults([{"kind": "reset"}])
    with pytest.raises(anthropic.APIConnectionError) as info:
        client_for(anthropic_sim).messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    assert not isinstance(info.value, anthropic.APITimeoutError)
    assert anthropic_sim.stats().total["fault_reset"] == 1


def test_timeout(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    anthropic_sim.set_faults([{"kind": "timeout", "hang_s": 30}])
    with pytest.raises(anthropic.APITimeoutError):
        client_for(anthropic_sim, timeout=0.3).messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    assert anthropic_sim.stats().total["fault_timeout"] == 1


def test_error_event_mid_stream(anthropic_sim_factory: Callable[..., RunningSimulator],
                                client_for: Callable[..., Any]) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, output=OutputSpec(mode="fixed", tokens=100),
                                                 round_tokens_to=1, stream_chunk_tokens=5))
    sim.set_faults([{"kind": "stream_error", "after_tokens": 20}])
    client = client_for(sim)
    received = []
    with pytest.raises(anthropic.APIStatusError) as info:
        for event in client.messages.create(model=MODEL, max_tokens=200, messages=HELLO, stream=True):
            received.append(event.type)
    err = info.value
    assert type(err) is anthropic.APIStatusError
    assert err.status_code == 200 and err.type == "overloaded_error"
    assert received.count("content_block_delta") == 4
    # Output is charged for the 20 tokens sent, the rest of max_tokens is given back.
    assert sim.stats().key("acct-1")["output_tokens"] == 20
    assert sim.stats().key("acct-1")["fault_stream_error"] == 1
    # Plain (non-stream) requests are not affected by a stream_error rule.
    assert client.messages.create(model=MODEL, max_tokens=200, messages=HELLO).usage.output_tokens == 100


def test_a_cut_stream_just_ends_and_the_sdk_raises_nothing(
    anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any]
) -> None:
    """What a proxy dropping a long stream looks like: the response ends cleanly mid-message. The
    SDK's iterator simply stops; only the missing ``message_stop`` tells the stream was cut."""
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, output=OutputSpec(mode="fixed", tokens=100),
                                                 round_tokens_to=1, stream_chunk_tokens=5))
    sim.set_faults([{"kind": "stream_cut", "after_tokens": 20}])
    client = client_for(sim)
    received = [e.type for e in client.messages.create(model=MODEL, max_tokens=200, messages=HELLO, stream=True)]
    assert received.count("content_block_delta") == 4
    assert "message_stop" not in received and "error" not in received
    assert sim.stats().key("acct-1")["output_tokens"] == 20
    assert sim.stats().key("acct-1")["fault_stream_cut"] == 1
    assert client.messages.create(model=MODEL, max_tokens=200, messages=HELLO).usage.output_tokens == 100


def test_latency_model(anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any]) -> None:
    from claude_pool.simulator import Latency

    sim = anthropic_sim_factory(Scenario.uniform(
        accounts=1, latency=Latency(ttft_ms=100, output_tokens_per_second=200),
        output=OutputSpec(mode="fixed", tokens=20), stream_chunk_tokens=5))
    client = client_for(sim)
    start = time.monotonic()
    client.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
    assert time.monotonic() - start >= 0.1 + 20 / 200  # a lower bound only: slow machines are fine
    start = time.monotonic()
    events = [e.type for e in client.messages.create(model=MODEL, max_tokens=50, messages=HELLO, stream=True)]
    assert time.monotonic() - start >= 0.1 + 20 / 200
    assert events.count("content_block_delta") == 4
