"""The way upstream: a Messages body sent as it came (a drop-in client's, or a delegation's), over
one plain aiohttp session, its answer or its stream's events read as they come.

The SDK's client is made for building typed requests and parsing typed answers; a relay needs
neither, and the SDK's request building costs more CPU than the rest of the pool's work on a call
(measured: about 1 ms of a 2 ms delegation). Failures are raised as the SDK's own exceptions
(``APIStatusError`` with upstream's body, ``APIConnectionError``, ``APITimeoutError``), so the
pool classifies a relayed call exactly as any other.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
import anthropic
import httpx2

from claude_pool.core.errors import ClaudePoolError, UpstreamFailure

__all__ = [
    "DEFAULT_ANTHROPIC_VERSION",
    "EventRelay",
    "OnText",
    "RelayTransport",
    "StreamBrokeAfterStart",
    "StreamReader",
]

#: What a client that names no version gets (the SDKs always name one).
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
_API = "https://api.anthropic.com"

#: What hears a stream's text as it arrives (a delegation's ``on_text``).
OnText = Callable[[str], Awaitable[None]]


class EventRelay(Protocol):
    """Where a relayed answer goes (the drop-in endpoint's client). A stream: ``start`` once, with
    upstream's response headers, just before the first event; then each server-sent event's bytes
    as they came. A whole answer: ``whole`` once, with its headers and its bytes as they came, as
    soon as they are read: a 200 with a JSON object is the answer whatever the pool's bookkeeping
    (settlement, breaker) that follows it, so the client need not wait for that."""

    async def start(self, headers: Mapping[str, str]) -> None: ...

    async def event(self, raw: bytes) -> None: ...

    async def whole(self, headers: Mapping[str, str], content: bytes) -> None: ...


class StreamBrokeAfterStart(ClaudePoolError):
    """A stream failed after its first event: the caller must see a failure, never a success.

    Private to the pool (not exported): the pool classifies its ``cause`` and raises an
    :class:`~claude_pool.core.errors.UpstreamError` instead, so no caller of the library meets it.
    """

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(f"the stream failed after it started: {type(cause).__name__}")


class RelayTransport:
    def __init__(self, base_url: str | None, *, max_connections: int = 512) -> None:
        self.base_url = (base_url or _API).rstrip("/")
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def send(
        self,
        api_key: str,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str],
        timeout: float,
        events: EventRelay | None = None,
        on_text: OnText | None = None,
    ) -> tuple[dict[str, Any], Mapping[str, str]]:
        """``body`` to ``/v1/messages`` with the client's ``headers``: upstream's message and its
        response headers. A streamed body's events go to ``events`` and its text to ``on_text`` as
        they arrive (see :class:`StreamReader` for what counts as before and after the first byte);
        a whole answer goes to ``events`` (when given) as soon as it is read."""
        response, request = await self._open(api_key, "POST", "/v1/messages", body, None, headers, timeout)
        async with response:
            if body.get("stream") is True:
                return await StreamReader(response, request, events, on_text).read(), response.headers
            content = await response.read()
            message = _json_message(response, content, request)
        if events is not None:
            await events.whole(response.headers, content)
        return message, response.headers

    async def call(
        self,
        api_key: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> httpx2.Response:
        """Any other call (token counting, the model list), answered as it came."""
        response, request = await self._open(api_key, method, path, body, params, headers, timeout)
        async with response:
            return _as_httpx(response, await response.read(), request)

    async def _open(
        self,
        api_key: str,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> tuple[aiohttp.ClientResponse, httpx2.Request]:
        """The response to a call, open, once its status says it was answered (an error status
        raises the SDK's status error, with upstream's body; no answer, its connection error)."""
        url = f"{self.base_url}{path}"
        sent = {"x-api-key": api_key, "anthropic-version": DEFAULT_ANTHROPIC_VERSION, **headers}
        data = None
        if body is not None:
            sent["content-type"] = "application/json"
            data = json.dumps(body)
        request = httpx2.Request(method, url)  # what the SDK's exceptions name; it carries no key
        limits = aiohttp.ClientTimeout(total=None, sock_connect=min(timeout, 30.0), sock_read=timeout)
        try:
            response = await self._open_session().request(
                method, url, data=data, params=params, headers=sent, timeout=limits
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise anthropic.APITimeoutError(request) from exc
        except aiohttp.ClientError as exc:
            raise anthropic.APIConnectionError(
                message=f"connection error: {type(exc).__name__}", request=request
            ) from exc
        if response.status >= 400:
            async with response:
                raise await _status_error(response, request)
        return response, request

    def _open_session(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop it was made on.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class StreamReader:
    """Reads a stream event by event: each goes to the relay (when there is one) as it came, each
    text delta to ``on_text``, and the message is assembled alongside, as upstream would have
    answered it whole (text, tool calls' input, thinking, citations; usage from ``message_start``
    and the last ``message_delta``).

    Until the first event is relayed, a failure raises as itself (an ``error`` event as the status
    error it stands for), so the pool may fail over; after it, a failure raises
    :class:`StreamBrokeAfterStart`, upstream's ``error`` event having been relayed first. A stream
    that ends without ``message_stop`` was cut short: a failure, never a success."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        request: httpx2.Request,
        relay: EventRelay | None = None,
        on_text: OnText | None = None,
    ) -> None:
        self.response = response
        self.request = request
        self.relay = relay
        self.on_text = on_text
        self.started = False
        self.message: dict[str, Any] = {}
        self.blocks: list[dict[str, Any]] = []
        self._partial_json: dict[int, str] = {}  # a tool call's input as its pieces came, by block
        self.stopped = False

    async def read(self) -> dict[str, Any]:
        pending = b""
        try:
            async for chunk in self.response.content.iter_any():
                pending += chunk
                *complete, pending = pending.replace(b"\r\n", b"\n").split(b"\n\n")
                for raw in complete:
                    if raw.strip():
                        await self._event(raw + b"\n\n")
            if not self.stopped:
                raise UpstreamFailure("the stream ended before message_stop", error_type="stream_cut")
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = anthropic.APIConnectionError(
                message=f"the stream broke: {type(exc).__name__}", request=self.request
            )
            if self.started:
                raise StreamBrokeAfterStart(failure) from exc
            raise failure from exc
        except Exception as exc:
            if self.started:
                raise StreamBrokeAfterStart(exc) from exc
            raise
        self.message["content"] = self.blocks
        return self.message

    async def _event(self, raw: bytes) -> None:
        kind, data = _parse_event(raw)
        if kind == "error":
            if self.started and self.relay is not None:
                await self.relay.event(raw)
            error = data.get("error") if isinstance(data, dict) else None
            message = str(error.get("message") if isinstance(error, dict) else data)
            raise anthropic.APIStatusError(
                message, response=_as_httpx(self.response, raw, self.request), body=data
            )
        if not self.started:
            self.started = True
            if self.relay is not None:
                await self.relay.start(self.response.headers)
        if self.relay is not None:
            await self.relay.event(raw)
        if isinstance(data, dict):
            text = self._assemble(kind, data)
            if text and self.on_text is not None:
                await self.on_text(text)

    def _assemble(self, kind: str | None, data: dict[str, Any]) -> str | None:
        """Fold one event into the message; a text delta's text is returned, for ``on_text``."""
        if kind == "message_start":
            self.message = dict(data.get("message") or {})
        elif kind == "content_block_start":
            self.blocks.append(dict(data.get("content_block") or {}))
        elif kind == "content_block_delta":
            index = int(data.get("index", len(self.blocks) - 1))
            if 0 <= index < len(self.blocks):
                return self._delta(index, data.get("delta") or {})
        elif kind == "content_block_stop":
            index = int(data.get("index", len(self.blocks) - 1))
            pieces = self._partial_json.pop(index, "")
            if pieces and 0 <= index < len(self.blocks):
                # A call cut at max_tokens sent only the start of its JSON: its input stays as announced.
                with contextlib.suppress(ValueError):
                    self.blocks[index]["input"] = json.loads(pieces)
        elif kind == "message_delta":
            self.message.update(data.get("delta") or {})
            self.message.setdefault("usage", {}).update(data.get("usage") or {})
        elif kind == "message_stop":
            self.stopped = True
        return None

    def _delta(self, index: int, delta: dict[str, Any]) -> str | None:
        block, kind = self.blocks[index], delta.get("type")
        if kind == "text_delta":
            text = str(delta.get("text", ""))
            block["text"] = block.get("text", "") + text
            return text
        if kind == "input_json_delta":
            self._partial_json[index] = self._partial_json.get(index, "") + str(delta.get("partial_json", ""))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + str(delta.get("thinking", ""))
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))
        return None


def _parse_event(raw: bytes) -> tuple[str | None, Any]:
    """An SSE event's name and its data (parsed JSON, or the text when it is not JSON)."""
    kind: str | None = None
    lines: list[str] = []
    for line in raw.decode("utf-8", "replace").split("\n"):
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            lines.append(line[5:].lstrip(" "))
    text = "\n".join(lines)
    try:
        return kind, json.loads(text) if text else None
    except ValueError:
        return kind, text


def _as_httpx(response: aiohttp.ClientResponse, content: bytes, request: httpx2.Request) -> httpx2.Response:
    """Upstream's answer in the shape the SDK's exceptions (and so the pool's classifier) read."""
    return httpx2.Response(
        response.status, headers=list(response.headers.items()), content=content, request=request
    )


async def _status_error(
    response: aiohttp.ClientResponse, request: httpx2.Request
) -> anthropic.APIStatusError:
    content = await response.read()
    try:
        body: Any = json.loads(content)
    except ValueError:
        body = content.decode("utf-8", "replace")
    error = body.get("error") if isinstance(body, dict) else None
    message = str(error.get("message")) if isinstance(error, dict) else f"Error code: {response.status}"
    return anthropic.APIStatusError(message, response=_as_httpx(response, content, request), body=body)


def _json_message(
    response: aiohttp.ClientResponse, content: bytes, request: httpx2.Request
) -> dict[str, Any]:
    try:
        message = json.loads(content)
    except ValueError as exc:
        raise anthropic.APIResponseValidationError(
            _as_httpx(response, content, request), content.decode("utf-8", "replace")
        ) from exc
    if not isinstance(message, dict):
        raise anthropic.APIResponseValidationError(_as_httpx(response, content, request), message)
    return message
