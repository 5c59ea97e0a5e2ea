"""Tool use through the real ``anthropic`` client: a forced tool is called with an input built from its
schema, plainly and streamed; tool results come back as input; count_tokens takes the same body."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from claude_pool.simulator import RunningSimulator, Scenario, count_input_tokens

from .conftest import HELLO, MODEL

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "metric": {"type": "boolean"},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                      "required": ["lat"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "note": {"type": "string"},
        },
        "required": ["city", "days", "unit", "metric", "where", "tags"],
    },
}
CLOCK = {
    "name": "get_time",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string", "default": "UTC"}}, "required": ["tz"]},
}
TOOLS = [WEATHER, CLOCK]
#: What the simulated model passes to WEATHER: every required property, a simple value of its type.
WEATHER_INPUT = {"city": "example", "days": 1, "unit": "celsius", "metric": True, "where": {"lat": 1}, "tags": []}


def test_named_tool_is_called(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim)
    message = client.messages.create(model=MODEL, max_tokens=200, messages=HELLO, tools=TOOLS,
                                     tool_choice={"type": "tool", "name": "get_time"})
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert isinstance(block, anthropic.types.ToolUseBlock)
    assert block.id.startswith("toolu_") and block.name == "get_time"
    assert block.input == {"tz": "UTC"}
    counts = anthropic_sim.stats().key("acct-1")
    assert counts["served"] == 1 and counts["output_tokens"] == message.usage.output_tokens >= 1


def test_any_calls_the_first_tool(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    message = client_for(anthropic_sim).messages.create(model=MODEL, max_tokens=200, messages=HELLO,
                                                        tools=TOOLS, tool_choice={"type": "any"})
    assert message.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in message.content] == [("tool_use", "get_weather", WEATHER_INPUT)]


@pytest.mark.parametrize("choice", [None, {"type": "auto"}, {"type": "none"}])
def test_without_a_forced_tool_the_answer_is_text(anthropic_sim: RunningSimulator, client_for: Callable[..., Any],
                                                  choice: dict[str, str] | None) -> None:
    extra = {} if choice is None else {"tool_choice": choice}
    message = client_for(anthropic_sim).messages.create(model=MODEL, max_tokens=50, messages=HELLO, tools=TOOLS,
                                                        **extra)
    assert [b.type for b in message.content] == ["text"]
    assert message.stop_reason in ("end_turn", "max_tokens")


def test_a_call_longer_than_max_tokens_stops_at_max_tokens(anthropic_sim: RunningSimulator,
                                                           client_for: Callable[..., Any]) -> None:
    message = client_for(anthropic_sim).messages.create(model=MODEL, max_tokens=3, messages=HELLO, tools=TOOLS,
                                                        tool_choice={"type": "tool", "name": "get_weather"})
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_tool_result_goes_back_as_input(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    client = client_for(anthropic_sim)
    call = client.messages.create(model=MODEL, max_tokens=200, messages=HELLO, tools=TOOLS,
                                  tool_choice={"type": "any"})
    block = call.content[0]
    assert block.type == "tool_use"
    result = "sunny, 21 degrees, light wind from the west " * 10
    messages = [
        *HELLO,
        {"role": "assistant", "content": [block.model_dump(include={"type", "id", "name", "input"})]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id,
                                      "content": [{"type": "text", "text": result}]}]},
    ]
    answer = client.messages.create(model=MODEL, max_tokens=50, messages=messages, tools=TOOLS)
    assert answer.content[0].type == "text"
    assert answer.usage.input_tokens == count_input_tokens({"messages": messages})
    assert answer.usage.input_tokens > len(result) // 4  # the tool result's text is counted
    sent = anthropic_sim.last_request("acct-1")["body"]["messages"]
    assert sent[2]["content"][0]["tool_use_id"] == block.id


def _streaming_sim(factory: Callable[..., RunningSimulator]) -> RunningSimulator:
    # Two tokens (8 characters of JSON) per delta, so the input arrives in several pieces.
    return factory(Scenario.uniform(accounts=1, rpm=10_000, itpm=10_000_000, otpm=2_000_000, stream_chunk_tokens=2))


def test_stream_sends_input_json_deltas(anthropic_sim_factory: Callable[..., RunningSimulator],
                                        client_for: Callable[..., Any]) -> None:
    sim = _streaming_sim(anthropic_sim_factory)
    client = client_for(sim)
    events = list(client.messages.create(model=MODEL, max_tokens=200, messages=HELLO, tools=TOOLS, stream=True,
                                         tool_choice={"type": "tool", "name": "get_weather"}))
    types = [e.type for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = events[1].content_block
    assert (start.type, start.name, start.input) == ("tool_use", "get_weather", {})
    deltas = [e.delta for e in events[2:-3]]
    assert len(deltas) > 1 and {d.type for d in deltas} == {"input_json_delta"}
    assert json.loads("".join(d.partial_json for d in deltas)) == WEATHER_INPUT
    assert events[-2].delta.stop_reason == "tool_use"


def test_stream_helper_assembles_the_call(anthropic_sim_factory: Callable[..., RunningSimulator],
                                          client_for: Callable[..., Any]) -> None:
    sim = _streaming_sim(anthropic_sim_factory)
    with client_for(sim).messages.stream(model=MODEL, max_tokens=200, messages=HELLO, tools=TOOLS,
                                         tool_choice={"type": "tool", "name": "get_weather"}) as stream:
        snapshots = [e.snapshot for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    [block] = final.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == WEATHER_INPUT
    assert len(snapshots) > 1 and snapshots[-1] == WEATHER_INPUT  # the input grows as pieces arrive
    assert sim.stats().key("acct-1")["output_tokens"] == final.usage.output_tokens


async def test_async_stream_and_create(anthropic_sim: RunningSimulator) -> None:
    async with anthropic.AsyncAnthropic(
        api_key=anthropic_sim.key("acct-2").key, base_url=anthropic_sim.base_url, max_retries=0
    ) as client:
        message = await client.messages.create(model=MODEL, max_tokens=200, messages=HELLO, tools=TOOLS,
                                               tool_choice={"type": "tool", "name": "get_time"})
        async with client.messages.stream(model=MODEL, max_tokens=200, messages=HELLO, tools=TOOLS,
                                          tool_choice={"type": "any"}) as stream:
            final = await stream.get_final_message()
    assert message.content[0].type == "tool_use" and message.content[0].input == {"tz": "UTC"}
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == WEATHER_INPUT


@pytest.mark.parametrize(("tools", "choice"), [
    (TOOLS, {"type": "tool", "name": "no_such_tool"}),
    ([], {"type": "any"}),
    (TOOLS, {"type": "sometimes"}),
])
def test_bad_tool_choice_is_refused(anthropic_sim: RunningSimulator, client_for: Callable[..., Any],
                                    tools: list[dict[str, Any]], choice: dict[str, str]) -> None:
    client = client_for(anthropic_sim)
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=50, messages=HELLO, tools=tools, tool_choice=choice)
    assert info.value.type == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError):
        client.messages.count_tokens(model=MODEL, messages=HELLO, tools=tools, tool_choice=choice)
    assert anthropic_sim.stats().key("acct-1")["rejected_invalid"] == 2


def test_count_tokens_takes_a_messages_body(anthropic_sim: RunningSimulator, client_for: Callable[..., Any]) -> None:
    body: dict[str, Any] = {
        "system": [{"type": "text", "text": "You answer questions about the weather, briefly."}],
        "messages": [
            *HELLO,
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_time",
                                               "input": {"tz": "UTC"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "noon"}]},
        ],
        "tools": TOOLS,
        "tool_choice": {"type": "auto"},
    }
    counted = client_for(anthropic_sim).messages.count_tokens(model=MODEL, **body)
    assert counted.input_tokens == count_input_tokens(body)
    assert counted.input_tokens > count_input_tokens({"messages": HELLO})  # system and tool blocks count
    assert anthropic_sim.stats().key("acct-1")["count_tokens"] == 1
