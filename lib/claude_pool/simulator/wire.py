"""Bytes on the wire of the Anthropic API: error bodies, rate-limit headers, message bodies, SSE events."""

from __future__ import annotations

import itertools
import json
import os
import time
from functools import lru_cache
from typing import Any

from aiohttp import web

from claude_pool.simulator.buckets import OrgBuckets, TokenBucket

__all__ = [
    "IdSource",
    "error_response",
    "input_json_delta",
    "message_body",
    "ratelimit_headers",
    "rfc3339",
    "sse_event",
    "stream_end",
    "stream_error",
    "stream_events",
    "text_delta",
]

_JSON = "application/json"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class IdSource:
    """Unique, cheap ids: a random prefix per simulator and a counter (no syscall per request)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._seq = itertools.count(1)

    def request_id(self) -> str:
        return f"req_011C{self._prefix}{next(self._seq):012d}"

    def message_id(self) -> str:
        return f"msg_01{self._prefix}{next(self._seq):012d}"

    def tool_use_id(self) -> str:
        return f"toolu_01{self._prefix}{next(self._seq):012d}"


@lru_cache(maxsize=4096)
def rfc3339(epoch_seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


def _reset(bucket: TokenBucket, wall_now: float) -> str:
    # Seconds precision, rounded up: at the stated time the bucket is full.
    return rfc3339(-int(-(wall_now + bucket.seconds_until_full()) // 1))


def ratelimit_headers(buckets: OrgBuckets, wall_now: float, round_to: int) -> dict[str, str]:
    """The ``anthropic-ratelimit-*`` headers for the buckets' state now (refill them first).

    ``-tokens-*`` reports whichever of the input and output buckets has fewer tokens left, as the
    "most restrictive limit currently in effect".
    """
    req, inp, out = buckets.requests, buckets.input_tokens, buckets.output_tokens
    in_left = int(inp.level) // round_to * round_to
    out_left = int(out.level) // round_to * round_to
    tightest, tight_left = (inp, in_left) if in_left <= out_left else (out, out_left)
    return {
        "anthropic-ratelimit-requests-limit": str(int(req.capacity)),
        "anthropic-ratelimit-requests-remaining": str(int(req.level)),
        "anthropic-ratelimit-requests-reset": _reset(req, wall_now),
        "anthropic-ratelimit-input-tokens-limit": str(int(inp.capacity)),
        "anthropic-ratelimit-input-tokens-remaining": str(in_left),
        "anthropic-ratelimit-input-tokens-reset": _reset(inp, wall_now),
        "anthropic-ratelimit-output-tokens-limit": str(int(out.capacity)),
        "anthropic-ratelimit-output-tokens-remaining": str(out_left),
        "anthropic-ratelimit-output-tokens-reset": _reset(out, wall_now),
        "anthropic-ratelimit-tokens-limit": str(int(tightest.capacity)),
        "anthropic-ratelimit-tokens-remaining": str(tight_left),
        "anthropic-ratelimit-tokens-reset": _reset(tightest, wall_now),
    }


def error_response(
    status: int,
    error_type: str,
    message: str,
    request_id: str,
    *,
    headers: dict[str, str] | None = None,
    error_code: str | None = None,
) -> web.Response:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    body = {"type": "error", "error": error, "request_id": request_id}
    all_headers = {"request-id": request_id}
    if headers:
        all_headers.update(headers)
    return web.Response(status=status, body=_dumps(body).encode(), content_type=_JSON, headers=all_headers)


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message_body(
    msg_id: str, model: str, content: list[dict[str, Any]], input_tokens: int, output_tokens: int, stop: str
) -> bytes:
    return _dumps(
        {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": _usage(input_tokens, output_tokens),
        }
    ).encode()


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps(data).encode() + b"\n\n"


_TEXT_START: dict[str, Any] = {"type": "text", "text": ""}


def stream_events(
    msg_id: str, model: str, input_tokens: int, block_start: dict[str, Any] | None = None
) -> bytes:
    """The opening of a stream: message_start, content_block_start (of ``block_start``, a text block
    unless told) and a ping, as upstream sends."""
    start = {
        "type": "message_start",
        "message": {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(input_tokens, 1),
        },
    }
    return (
        sse_event("message_start", start)
        + sse_event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block_start or _TEXT_START},
        )
        + sse_event("ping", {"type": "ping"})
    )


def text_delta(text: str) -> bytes:
    return sse_event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


def input_json_delta(partial_json: str) -> bytes:
    """A piece of a tool_use block's input, as JSON text that only parses once all pieces are joined."""
    return sse_event(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": partial_json},
        },
    )


def stream_end(input_tokens: int, output_tokens: int, stop: str) -> bytes:
    return (
        sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + sse_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": output_tokens,
                },
            },
        )
        + sse_event("message_stop", {"type": "message_stop"})
    )


def stream_error(request_id: str) -> bytes:
    return sse_event(
        "error",
        {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": request_id,
        },
    )
