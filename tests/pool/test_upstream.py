"""The pool's one way upstream (``UpstreamClient``) against the simulator: a streamed message is
assembled exactly as the same message answered whole, a stream cut short is a failure, and token
counting goes over the same session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import pytest

from claude_pool.core.errors import UpstreamFailure
from claude_pool.pool.upstream import StreamBrokeAfterStart, UpstreamClient
from claude_pool.simulator import OutputSpec, RunningSimulator, Scenario, count_input_tokens

MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "hello there"}]
WEATHER = {
    "name": "get_weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "tags": {"type": "array"}},
        "required": ["city", "days", "tags"],
    },
}


@pytest.fixture
def sim(anthropic_sim_factory: Callable[..., RunningSimulator]) -> RunningSimulator:
    # Two tokens per delta: text and a tool call's input arrive in several pieces.
    return anthropic_sim_factory(
        Scenario.uniform(
            accounts=1, output=OutputSpec(mode="fixed", tokens=40), round_tokens_to=1, stream_chunk_tokens=2
        )
    )


@pytest.fixture
async def upstream(sim: RunningSimulator) -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(base_url=sim.base_url)
    yield client
    await client.aclose()


def _key(sim: RunningSimulator) -> str:
    return sim.key("acct-1").key


def _same_but_ids(streamed: dict[str, Any], whole: dict[str, Any]) -> None:
    for message in (streamed, whole):
        message.pop("id")
        for block in message["content"]:
            block.pop("id", None)
    assert streamed == whole


@pytest.mark.parametrize(
    "extra",
    [{}, {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"}}],
    ids=["text", "tool call"],
)
async def test_a_streamed_message_is_assembled_as_the_same_message_answered_whole(
    sim: RunningSimulator, upstream: UpstreamClient, extra: dict[str, Any]
) -> None:
    body = {"model": MODEL, "max_tokens": 200, "messages": HELLO, **extra}
    texts: list[str] = []

    async def on_text(text: str) -> None:
        texts.append(text)

    streamed = await upstream.stream(_key(sim), body, on_text=on_text)
    whole = await upstream.create(_key(sim), body)
    assert streamed.request_id and streamed.request_id != whole.request_id
    if extra:
        assert streamed.message["content"][0]["input"] == {"city": "example", "days": 1, "tags": []}
        assert texts == []
    else:
        assert len(texts) > 1 and "".join(texts) == streamed.message["content"][0]["text"]
    _same_but_ids(streamed.message, whole.message)


async def test_a_stream_cut_before_message_stop_is_a_failure_never_a_success(
    sim: RunningSimulator, upstream: UpstreamClient
) -> None:
    """A proxy that drops a long stream ends the response cleanly; the SDK's own iterator just
    stops there (tests/simulator), so only the missing ``message_stop`` tells."""
    sim.set_faults([{"kind": "stream_cut", "after_tokens": 10}])
    texts: list[str] = []

    async def on_text(text: str) -> None:
        texts.append(text)

    with pytest.raises(StreamBrokeAfterStart) as info:
        await upstream.stream(_key(sim), {"model": MODEL, "max_tokens": 200, "messages": HELLO}, on_text=on_text)
    assert isinstance(info.value.cause, UpstreamFailure) and info.value.cause.error_type == "stream_cut"
    assert len(texts) == 5  # what came before the cut was heard
    assert sim.stats().key("acct-1")["fault_stream_cut"] == 1


async def test_an_error_before_the_first_event_raises_as_itself(
    sim: RunningSimulator, upstream: UpstreamClient
) -> None:
    """So that the pool may fail over: nothing of the answer has been heard yet."""
    sim.set_faults([{"kind": "overloaded"}])
    with pytest.raises(anthropic.APIStatusError) as info:
        await upstream.stream(_key(sim), {"model": MODEL, "max_tokens": 200, "messages": HELLO})
    assert info.value.status_code == 529


async def test_tokens_are_counted_over_the_same_session(sim: RunningSimulator, upstream: UpstreamClient) -> None:
    body = {"model": MODEL, "max_tokens": 200, "messages": HELLO, "system": "be brief"}
    assert await upstream.count_tokens(_key(sim), body) == count_input_tokens(body)
    with pytest.raises(anthropic.APIStatusError) as info:
        await upstream.count_tokens("sk-ant-not-a-key", body)
    assert info.value.status_code == 401
