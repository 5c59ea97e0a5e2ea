"""The Anthropic Messages API, served by aiohttp from a ``SimulatorState`` (the Models API is in
``models_api``, tool calls in ``tool_use``, streams in ``streaming``).

The hot path (authenticate, parse, admit, answer) stays free of awaits except for the body read and
the configured latency, so each request's admission is atomic on the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from claude_pool.simulator import tool_use, wire
from claude_pool.simulator.faults import STREAM_FAULTS, FaultRule
from claude_pool.simulator.models_api import DEFAULT_MODELS, ModelCatalogue
from claude_pool.simulator.scenario import KeySpec
from claude_pool.simulator.server import reset_connection
from claude_pool.simulator.state import RequestRecord, SimulatorState
from claude_pool.simulator.tokens import count_input_tokens, output_text, output_tokens_for

__all__ = ["ACCEPTED_VERSIONS", "AnthropicSimulator"]

ACCEPTED_VERSIONS = frozenset({"2026-10-21", "2023-06-01"})
_METRIC_LABEL = {"requests": "requests", "input_tokens": "input tokens", "output_tokens": "output tokens"}
_LIMIT_OF = {"requests": "rpm", "input_tokens": "itpm", "output_tokens": "otpm"}
_FAULT_ERRORS = {
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}
_ROLES = frozenset({"user", "assistant"})
_DRAIN_LIMIT = 256 * 1024 * 1024
# A POST route under /v1/messages once the prelude passed: (request, request id, key, raw body, body).
_Posted = Callable[[web.Request, str, KeySpec, bytes, Any], Awaitable[web.StreamResponse]]


def _validate(body: Any) -> str | None:
    """The first problem of a Messages body, in upstream's words, or None."""
    if not isinstance(body, Mapping):
        return "body: Input should be an object"
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        return "max_tokens: Field required"
    if max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or m.get("role") not in _ROLES or "content" not in m:
            return f"messages.{i}: each message needs a role of user or assistant and a content"
    return None


class AnthropicSimulator:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.ids = wire.IdSource()
        sc = state.scenario
        self._models = frozenset(sc.models) if sc.models is not None else None
        self.catalogue = ModelCatalogue(sc.models if sc.models is not None else DEFAULT_MODELS)

    def app(self) -> web.Application:
        # Import here: the control and admin routes are not on the hot path and import this module.
        from claude_pool.simulator import admin_api, control, models_api

        app = web.Application(client_max_size=self.state.scenario.max_body_bytes + 1)
        app.router.add_post("/v1/messages", self._after_prelude(self.messages))
        app.router.add_post("/v1/messages/count_tokens", self._after_prelude(self.count_tokens))
        models_api.add_routes(app, self)
        admin_api.add_routes(app, self)
        control.add_anthropic_routes(app, self)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    # ---- helpers -------------------------------------------------------------------------------

    def authenticate(self, request: web.BaseRequest) -> KeySpec | None:
        headers = request.headers
        auth = headers.get("Authorization")
        secret = auth[7:] if auth is not None and auth.startswith("Bearer ") else headers.get("x-api-key")
        return self.state.keys.get(secret) if secret else None

    def _headers(self, key: KeySpec, request_id: str, now: float) -> dict[str, str]:
        buckets = self.state.buckets[key.org]
        buckets.refill(now)
        headers = wire.ratelimit_headers(buckets, self.state.wall(now), self.state.scenario.round_tokens_to)
        headers["request-id"] = request_id
        headers["anthropic-organization-id"] = key.org
        return headers

    def _error(
        self, key: KeySpec, rid: str, status: int, etype: str, message: str, **kw: Any
    ) -> web.Response:
        headers = self._headers(key, rid, self.state.now())
        extra = kw.pop("headers", None)
        if extra:
            headers.update(extra)
        return wire.error_response(status, etype, message, rid, headers=headers, **kw)

    async def _read_json(
        self, request: web.Request, key: KeySpec, rid: str
    ) -> tuple[bytes, Any] | web.Response:
        limit = self.state.scenario.max_body_bytes
        length = request.content_length
        if length is None or length > limit:
            # Drain what the client sends before refusing it, so it reads our 413 rather than a broken pipe.
            seen = 0
            while chunk := await request.content.read(1 << 20):
                seen += len(chunk)
                if seen > _DRAIN_LIMIT:
                    break
            if length is not None or seen > limit:
                self.state.counters[key.name]["rejected_invalid"] += 1
                return self._error(
                    key, rid, 413, "request_too_large", f"Request exceeds the maximum size of {limit} bytes"
                )
            raw = b""
        else:
            raw = await request.read()
        try:
            return raw, json.loads(raw)
        except ValueError:
            self.state.counters[key.name]["rejected_invalid"] += 1
            return self._error(key, rid, 400, "invalid_request_error", "The request body is not valid JSON")

    def _after_prelude(self, handler: _Posted) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The route of a POST under /v1/messages: a new request id, :meth:`_prelude` (whose refusal
        is the answer), then ``handler`` with the key and the body read."""

        async def route(request: web.Request) -> web.StreamResponse:
            rid = self.ids.request_id()
            pre = await self._prelude(request, rid)
            if isinstance(pre, web.Response):
                return pre
            return await handler(request, rid, *pre)

        return route

    async def _prelude(self, request: web.Request, rid: str) -> tuple[KeySpec, bytes, Any] | web.Response:
        """Authentication, version, size and JSON: what every POST under /v1/messages shares. A request
        that passes is recorded in its key's request log."""
        key = self.authenticate(request)
        if key is None:
            self.state.unauthenticated += 1
            return wire.error_response(401, "authentication_error", "invalid x-api-key", rid)
        self.state.counters[key.name]["received"] += 1
        self.state.last_received[key.name] = self.state.now()
        refused = self._check_key(request, key, rid)
        if refused is not None:
            return refused
        parsed = await self._read_json(request, key, rid)
        if isinstance(parsed, web.Response):
            return parsed
        self._log(request, key, rid, parsed[1])
        return key, parsed[0], parsed[1]

    def admit_models_call(self, request: web.Request, rid: str) -> KeySpec | web.Response:
        """The key of a Models API call, or the refusal to answer: the checks of :meth:`_prelude`,
        counted under ``models`` rather than ``received``."""
        key = self.authenticate(request)
        if key is None:
            self.state.unauthenticated += 1
            return wire.error_response(401, "authentication_error", "invalid x-api-key", rid)
        self.state.counters[key.name]["models"] += 1
        refused = self._check_key(request, key, rid)
        if refused is not None:
            return refused
        self._log(request, key, rid, None)
        return key

    def _check_key(self, request: web.Request, key: KeySpec, rid: str) -> web.Response | None:
        """A revoked key or an unknown ``anthropic-version`` is refused, whatever the route."""
        counters = self.state.counters[key.name]
        revoked = self.state.revoked.get(key.key)
        if revoked is not None:
            counters["rejected_auth"] += 1
            return self._revoked(key, rid, revoked)
        version = request.headers.get("anthropic-version")
        if version is not None and version not in ACCEPTED_VERSIONS:
            counters["rejected_invalid"] += 1
            return self._error(
                key, rid, 400, "invalid_request_error", f"anthropic-version: unknown version {version!r}"
            )
        return None

    def _log(self, request: web.Request, key: KeySpec, rid: str, body: Any) -> None:
        # One tuple appended to a bounded deque: the hot path pays O(1) for the log.
        headers = request.headers
        self.state.request_log[key.name].append(
            RequestRecord(
                rid,
                request.method,
                request.path,
                request.query_string,
                headers.get("anthropic-version"),
                headers.get("anthropic-beta"),
                body,
            )
        )

    def _revoked(self, key: KeySpec, rid: str, status: int) -> web.Response:
        if status == 403:
            return self._error(
                key,
                rid,
                403,
                "permission_error",
                "Your API key does not have permission to use the specified resource.",
            )
        return wire.error_response(401, "authentication_error", "invalid x-api-key", rid)

    # ---- routes --------------------------------------------------------------------------------

    async def messages(
        self, request: web.Request, rid: str, key: KeySpec, raw: bytes, body: Any
    ) -> web.StreamResponse:
        st = self.state
        counters = st.counters[key.name]
        problem = _validate(body)
        tool = None
        if problem is None and ("tool_choice" in body or "tools" in body):
            tool, problem = tool_use.forced_tool(body)
        if problem is not None:
            counters["rejected_invalid"] += 1
            return self._error(key, rid, 400, "invalid_request_error", problem)
        model: str = body["model"]
        if (self._models is None and not model.startswith("claude-")) or (
            self._models is not None and model not in self._models
        ):
            counters["rejected_invalid"] += 1
            return self._error(key, rid, 404, "not_found_error", f"model: {model}")
        streaming = body.get("stream") is True
        now = st.now()
        fault = st.faults.pick(key.name, key.key, key.org, now - st.started_mono, streaming=streaming)
        if fault is not None and fault.kind not in STREAM_FAULTS:
            return await self._fault(request, fault, key, rid)
        if st.over_spend_cap(key):
            return self._spend_cap(key, rid)
        input_tokens = count_input_tokens(body)
        max_tokens: int = body["max_tokens"]
        refused = st.buckets[key.org].try_admit(input_tokens, max_tokens, now)
        if refused is not None:
            return self._rate_limited(key, rid, refused, input_tokens, max_tokens, now)
        call = None if tool is None else tool_use.plan_tool_call(tool, self.ids.tool_use_id())
        out = self._output_tokens(raw, max_tokens) if call is None else min(call.tokens, max_tokens)
        counters["served"] += 1
        if streaming:
            from claude_pool.simulator.streaming import stream_reply

            return await stream_reply(
                self, request, key, rid, model, input_tokens, max_tokens, out, fault, call
            )
        return await self._reply(key, rid, model, input_tokens, max_tokens, out, call)

    def _output_tokens(self, raw: bytes, max_tokens: int) -> int:
        sc = self.state.scenario
        return output_tokens_for(
            raw,
            max_tokens,
            seed=sc.seed,
            mode=sc.output.mode,
            fraction=sc.output.fraction,
            tokens=sc.output.tokens,
        )

    def _rate_limited(
        self, key: KeySpec, rid: str, refused: str, input_tokens: int, max_tokens: int, now: float
    ) -> web.Response:
        st = self.state
        st.counters[key.name]["rejected_rate_limit_" + refused] += 1
        limit = getattr(st.orgs[key.org].limits, _LIMIT_OF[refused])
        retry = st.buckets[key.org].retry_after(input_tokens, max_tokens, now)
        return self._error(
            key,
            rid,
            429,
            "rate_limit_error",
            f"This request would exceed your organization's ({key.org}) rate limit of {limit} "
            f"{_METRIC_LABEL[refused]} per minute. For details, refer to: "
            "https://docs.claude.com/en/api/rate-limits.",
            headers={"retry-after": str(retry)},
        )

    async def _reply(
        self,
        key: KeySpec,
        rid: str,
        model: str,
        input_tokens: int,
        max_tokens: int,
        out: int,
        call: tool_use.ToolCall | None,
    ) -> web.Response:
        st = self.state
        latency = st.scenario.latency
        if latency.ttft_ms or latency.output_tokens_per_second:
            tps = latency.output_tokens_per_second
            await asyncio.sleep(latency.ttft_ms / 1000 + (out / tps if tps else 0.0))
        now = st.now()
        st.buckets[key.org].refund_output(max_tokens - out, now)
        st.record_served(key, input_tokens, out, now)
        stop = tool_use.stop_reason(out, max_tokens, call)
        content = [{"type": "text", "text": output_text(out)}] if call is None else [call.block()]
        body = wire.message_body(self.ids.message_id(), model, content, input_tokens, out, stop)
        return web.Response(body=body, content_type="application/json", headers=self._headers(key, rid, now))

    def _spend_cap(self, key: KeySpec, rid: str) -> web.Response:
        self.state.counters[key.name]["rejected_spend_cap"] += 1
        return self._error(
            key,
            rid,
            429,
            "rate_limit_error",
            "You have reached your specified API usage limits. You will regain access on the 1st of next "
            "month at 00:00 UTC.",
            error_code="enforced_spend_limit_reached",
        )

    async def _fault(
        self, request: web.Request, fault: FaultRule, key: KeySpec, rid: str
    ) -> web.StreamResponse:
        counters = self.state.counters[key.name]
        kind = fault.kind
        if kind == "reset":
            counters["fault_reset"] += 1
            reset_connection(request)
            return web.Response(status=500)  # never sent: the transport is gone
        if kind == "timeout":
            counters["fault_timeout"] += 1
            await self._hang(request, fault.hang_s)
            reset_connection(request)
            return web.Response(status=504)
        if kind == "revoke":
            counters["rejected_auth"] += 1
            return self._revoked(key, rid, fault.effective_status or 401)
        if kind == "billing":
            counters["fault_billing"] += 1
            return self._error(
                key, rid, 402, "billing_error", "Your credit balance is too low to access the Anthropic API."
            )
        if kind == "spend_cap":
            return self._spend_cap(key, rid)
        if kind == "ramp":
            counters["rejected_ramp"] += 1
            return self._error(
                key,
                rid,
                429,
                "rate_limit_error",
                "Your organization's usage increased too quickly; ramp up gradually.",
                error_code="ramp_limit_exceeded",
                headers={"retry-after": str(fault.retry_after)},
            )
        status = fault.effective_status or 500
        counters[f"fault_{status}"] += 1
        etype, message = _FAULT_ERRORS[status]
        return self._error(key, rid, status, etype, message)

    @staticmethod
    async def _hang(request: web.Request, seconds: float) -> None:
        """Wait ``seconds`` or until the client gives up, whichever comes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(min(0.1, deadline - loop.time()))

    async def count_tokens(
        self, request: web.Request, rid: str, key: KeySpec, _raw: bytes, body: Any
    ) -> web.StreamResponse:
        if (
            not isinstance(body, Mapping)
            or not isinstance(body.get("messages"), list)
            or not isinstance(body.get("model"), str)
        ):
            self.state.counters[key.name]["rejected_invalid"] += 1
            return self._error(key, rid, 400, "invalid_request_error", "model and messages are required")
        if "tool_choice" in body or "tools" in body:
            # Tools and tool_choice are checked as for a message; the count is of the messages' text.
            problem = tool_use.forced_tool(body)[1]
            if problem is not None:
                self.state.counters[key.name]["rejected_invalid"] += 1
                return self._error(key, rid, 400, "invalid_request_error", problem)
        st = self.state
        fault = st.faults.pick(key.name, key.key, key.org, st.now() - st.started_mono, streaming=False)
        if fault is not None and fault.kind == "revoke":
            # A revoked key is revoked everywhere; other faults model message traffic only.
            return await self._fault(request, fault, key, rid)
        self.state.counters[key.name]["count_tokens"] += 1
        headers = {"request-id": rid, "anthropic-organization-id": key.org}
        return web.json_response({"input_tokens": count_input_tokens(body)}, headers=headers)

    async def not_found(self, request: web.Request) -> web.Response:
        rid = self.ids.request_id()
        return wire.error_response(404, "not_found_error", f"Not found: {request.method} {request.path}", rid)
