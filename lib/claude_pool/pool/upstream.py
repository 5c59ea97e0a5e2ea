"""The one place that talks to Anthropic.

The pool does its own retries (on another account where that helps), so nothing here retries. A
whole message goes over the relay's plain aiohttp session (:mod:`claude_pool.pool.relay`), failures
raised as the SDK's own exceptions: measured against the simulator one call at a time, the SDK's
request building, per-call client copy and typed parsing cost 2.0 ms of CPU per call, the relay
0.35 ms, and a delegation's own bookkeeping is about 1.7 ms. A stream with a text callback and token
counting use the real ``anthropic`` client, with ``max_retries=0``; one HTTP connection pool is
shared by every account, the key set on a per-call copy of the client (``with_options``), dropped as
soon as the call ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2

from claude_pool.pool.relay import EventRelay, RelayTransport, StreamBrokeAfterStart

__all__ = ["EventRelay", "StreamBrokeAfterStart", "UpstreamClient", "UpstreamReply"]

# A placeholder that satisfies the client's constructor; every call sets the real key.
_NO_KEY = "sk-ant-none"


@dataclass(frozen=True)
class UpstreamReply:
    message: dict[str, Any]
    headers: Mapping[str, str]
    request_id: str | None


class UpstreamClient:
    def __init__(
        self, *, base_url: str | None = None, timeout: float = 600.0, max_connections: int = 512
    ) -> None:
        self._http = anthropic.DefaultAioHttpClient(
            limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        )
        self._timeout = timeout
        self._relay = RelayTransport(base_url, max_connections=max_connections)
        self._base = anthropic.AsyncAnthropic(
            api_key=_NO_KEY,
            base_url=base_url or None,  # None: the SDK's default (ANTHROPIC_BASE_URL, else the API)
            max_retries=0,
            timeout=timeout,
            http_client=self._http,
        )

    async def create(
        self, api_key: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> UpstreamReply:
        """A whole message: upstream's JSON as it came, and its response headers."""
        return await self.relay(api_key, body, headers={}, timeout=timeout)

    async def count_tokens(self, api_key: str, body: Mapping[str, Any], *, timeout: float = 30.0) -> int:
        """A cheap authenticated call (token counting is not rate limited like messages)."""
        client = self._base.with_options(api_key=api_key, timeout=timeout)
        reply = await client.messages.count_tokens(
            model=body["model"],
            messages=body["messages"],
            **({"system": body["system"]} if "system" in body else {}),
        )
        return int(reply.input_tokens)

    async def relay(
        self,
        api_key: str,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str],
        events: EventRelay | None = None,
        timeout: float | None = None,
    ) -> UpstreamReply:
        """Send ``body`` exactly as given (fields this SDK does not know included) with the
        client's ``headers``; the reply's message is upstream's JSON as it came, a stream's events
        go to ``events`` as they arrive (see :mod:`claude_pool.pool.relay`)."""
        message, headers_back = await self._relay.send(
            api_key, body, headers=headers, timeout=timeout or self._timeout, events=events
        )
        return UpstreamReply(message, headers_back, headers_back.get("request-id"))

    async def call(
        self,
        api_key: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str],
        timeout: float = 30.0,
    ) -> httpx2.Response:
        """A call that reserves no capacity (token counting, the model list), sent and answered as
        is; an error status raises the SDK's status error, as for messages."""
        return await self._relay.call(
            api_key, method, path, body=body, params=params, headers=headers, timeout=timeout
        )

    async def stream(
        self,
        api_key: str,
        body: Mapping[str, Any],
        *,
        on_text: Callable[[str], Awaitable[None]] | None = None,
        timeout: float | None = None,
    ) -> UpstreamReply:
        """Stream a message, handing each text delta to ``on_text``; returns the assembled message.

        Anything that fails before the first event raises as itself (so the pool may fail over);
        anything after raises :class:`StreamBrokeAfterStart`.
        """
        client = self._base.with_options(api_key=api_key, timeout=timeout or anthropic.not_given)
        raw = await client.messages.with_raw_response.create(**body, stream=True)
        headers = dict(raw.headers)
        started = False
        message: dict[str, Any] = {}
        blocks: list[dict[str, Any]] = []
        try:
            stream = await raw.parse()
            async for event in stream:
                started = True
                if event.type == "message_start":
                    message = event.message.model_dump(mode="json")
                elif event.type == "content_block_start":
                    blocks.append(event.content_block.model_dump(mode="json"))
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    blocks[event.index]["text"] = blocks[event.index].get("text", "") + event.delta.text
                    if on_text is not None:
                        await on_text(event.delta.text)
                elif event.type == "message_delta":
                    message["stop_reason"] = event.delta.stop_reason
                    message["stop_sequence"] = event.delta.stop_sequence
                    usage = event.usage.model_dump(mode="json", exclude_none=True)
                    message.setdefault("usage", {}).update(usage)
        except Exception as exc:
            if started:
                raise StreamBrokeAfterStart(exc) from exc
            raise
        message["content"] = blocks
        return UpstreamReply(message, headers, headers.get("request-id"))

    async def aclose(self) -> None:
        await self._relay.aclose()
        await self._base.close()
        await self._http.aclose()
