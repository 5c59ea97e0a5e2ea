"""Server-sent events for ``stream: true``: the event sequence upstream sends, paced by the latency model."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from claude_pool.simulator import wire
from claude_pool.simulator.faults import FaultRule
from claude_pool.simulator.scenario import KeySpec
from claude_pool.simulator.tokens import output_text
from claude_pool.simulator.tool_use import ToolCall, stop_reason

if TYPE_CHECKING:
    from claude_pool.simulator.anthropic_server import AnthropicSimulator

__all__ = ["stream_reply"]


async def stream_reply(
    sim: AnthropicSimulator,
    request: web.Request,
    key: KeySpec,
    rid: str,
    model: str,
    input_tokens: int,
    max_tokens: int,
    out: int,
    fault: FaultRule | None,
    call: ToolCall | None = None,
) -> web.StreamResponse:
    """Stream ``out`` tokens: text, or ``call``'s input as ``input_json_delta`` pieces. With a
    ``stream_error`` fault, stop after ``after_tokens`` with an ``error`` event; with a ``stream_cut``,
    end the response there, as a proxy that drops a long stream would: no error event, no
    ``message_stop``. Output is charged for what was actually sent, whatever happens."""
    st = sim.state
    headers = sim._headers(key, rid, st.now())
    headers["Content-Type"] = "text/event-stream; charset=utf-8"
    headers["Cache-Control"] = "no-cache"
    response = web.StreamResponse(status=200, headers=headers)
    latency = st.scenario.latency
    paced = bool(latency.ttft_ms or latency.output_tokens_per_second)
    tps = latency.output_tokens_per_second
    chunk = max(1, st.scenario.stream_chunk_tokens)
    stop_at = min(out, fault.after_tokens) if fault is not None else out
    sent = 0
    # A tool call cut short by max_tokens sends the start of its JSON only, as upstream does.
    text, delta = (
        (output_text(out), wire.text_delta) if call is None else (call.input_json, wire.input_json_delta)
    )
    try:
        await response.prepare(request)
        if latency.ttft_ms:
            await asyncio.sleep(latency.ttft_ms / 1000)
        # Unpaced streams go out in one write: the client cannot tell, and it is many times cheaper.
        start = None if call is None else call.start_block()
        parts = [wire.stream_events(sim.ids.message_id(), model, input_tokens, start)]
        while sent < stop_at:
            n = min(chunk, stop_at - sent)
            parts.append(delta(text[4 * sent : 4 * (sent + n)]))
            sent += n
            if paced:
                await response.write(b"".join(parts))
                parts.clear()
                if tps:
                    await asyncio.sleep(n / tps)
        if fault is not None:
            st.counters[key.name][f"fault_{fault.kind}"] += 1
            if fault.kind == "stream_error":
                parts.append(wire.stream_error(rid))
        else:
            parts.append(wire.stream_end(input_tokens, out, stop_reason(out, max_tokens, call)))
        await response.write(b"".join(parts))
        await response.write_eof()
    finally:
        # Also when the client went away mid-stream: what it got so far is what it is charged for.
        now = st.now()
        st.buckets[key.org].refund_output(max_tokens - sent, now)
        st.record_served(key, input_tokens, sent, now)
    return response
