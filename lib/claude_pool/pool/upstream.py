"""The one place that talks to Anthropic.

The pool does its own retries (on another account where that helps), so nothing here retries. Every
call goes over the relay's plain aiohttp session (:mod:`claude_pool.pool.relay`), one connection
pool shared by every account, the key set on each request alone; failures are raised as the
``anthropic`` SDK's own exceptions, which the classifier reads. Measured against the simulator one
call at a time, the SDK's request building, per-call client copy and typed parsing cost 2.0 ms of
CPU per call, the relay 0.35 ms, and a delegation's own bookkeeping is about 1.7 ms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from claude_pool.pool.relay import EventRelay, OnText, RelayTransport, StreamBrokeAfterStart

__all__ = ["EventRelay", "StreamBrokeAfterStart", "UpstreamClient", "UpstreamReply"]


@dataclass(frozen=True)
class UpstreamReply:
    message: dict[str, Any]
    headers: Mapping[str, str]
    request_id: str | None


class UpstreamClient:
    def __init__(self, *, base_url: str | None = None, timeout: float = 600.0, max_connections: int = 512) -> None:
        self._timeout = timeout
        self._relay = RelayTransport(base_url, max_connections=max_connections)  # None: the API itself

    async def create(
        self, api_key: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> UpstreamReply:
        """A whole message: upstream's JSON as it came, and its response headers."""
        return await self.relay(api_key, body, headers={}, timeout=timeout)

    async def stream(
        self,
        api_key: str,
        body: Mapping[str, Any],
        *,
        on_text: OnText | None = None,
        timeout: float | None = None,
    ) -> UpstreamReply:
        """Stream a message, handing each text delta to ``on_text``; returns the message assembled
        from its events (see :class:`~claude_pool.pool.relay.StreamReader`: a failure before the
        first event raises as itself, so the pool may fail over; any after it, a stream cut before
        ``message_stop`` included, raises :class:`StreamBrokeAfterStart`)."""
        return await self._send(api_key, {**body, "stream": True}, {}, timeout, on_text=on_text)

    async def count_tokens(self, api_key: str, body: Mapping[str, Any], *, timeout: float = 30.0) -> int:
        """A cheap authenticated call (token counting is not rate limited like messages)."""
        counted = {name: body[name] for name in ("model", "messages", "system") if name in body}
        response = await self._relay.call(
            api_key, "POST", "/v1/messages/count_tokens", body=counted, params=None, headers={}, timeout=timeout
        )
        return int(response.json()["input_tokens"])

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
        return await self._send(api_key, body, headers, timeout, events=events)

    async def _send(
        self,
        api_key: str,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        timeout: float | None,
        *,
        events: EventRelay | None = None,
        on_text: OnText | None = None,
    ) -> UpstreamReply:
        message, headers_back = await self._relay.send(
            api_key, body, headers=headers, timeout=timeout or self._timeout, events=events, on_text=on_text
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

    async def aclose(self) -> None:
        await self._relay.aclose()
