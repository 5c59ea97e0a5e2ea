"""The drop-in Anthropic endpoint: ``POST /v1/messages``, ``POST /v1/messages/count_tokens``,
``GET /v1/models``, in the Messages API's own wire format.

An existing client (an Anthropic SDK, curl, a command-line agent) changes only its base URL and
sends the pool token as its key (``x-api-key`` or ``Authorization: Bearer``). The body goes
upstream as the client sent it, with its ``anthropic-version`` and ``anthropic-beta`` headers; the
answer (or the stream's events) and upstream's ``request-id`` come back as Anthropic sent them.
Behind it is the whole pool: the token's organization decides which accounts may serve, capacity
is reserved from the request as sent and settled from its usage, breakers and fail-over apply, and
each call is recorded as an execution (its id in ``x-claude-pool-execution-id``).

A token scoped to one organization needs nothing more; a token for several (or ``*``) names the
organization with the ``x-claude-pool-organization`` header.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from claude_pool.core.errors import ClaudePoolError
from claude_pool.http.anthropic_errors import anthropic_error, gateway_error
from claude_pool.http.auth import Principal, current_principal
from claude_pool.http.context import ApiContext, get_context
from claude_pool.http.gateway_stream import QueuedRelay
from claude_pool.pool.light_calls import RawAnswer
from claude_pool.pool.models import FORWARDED_HEADERS, DelegationRequest
from claude_pool.records.recorded import RecordedDelegation

__all__ = ["ORGANIZATION_HEADER", "router"]

ORGANIZATION_HEADER = "x-claude-pool-organization"
EXECUTION_HEADER = "x-claude-pool-execution-id"
_REQUIRED = ("model", "max_tokens", "messages")
_MODELLED = frozenset({*_REQUIRED, "system", "stream"})

router = APIRouter(prefix="/v1", tags=["anthropic"])
Ctx = Annotated[ApiContext, Depends(get_context)]
Caller = Annotated[Principal, Depends(current_principal)]


class GatewayRefusal(ClaudePoolError):
    """A request refused before it reaches the pool, answered in Anthropic's shape."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        self.response = anthropic_error(status, error_type, message)
        super().__init__(message)


@router.post("/messages", summary="The Messages API, served through the pool")
async def messages(request: Request) -> Response:
    # The hot path takes the context and the caller from the request itself: FastAPI's dependency
    # solving costs more here than reading two attributes (the auth middleware has run).
    ctx, caller = get_context(request), _caller(request)
    try:
        body = await _json_body(request)
        delegation = _delegation_request(body, _organization(request, caller), _forwarded(request))
    except GatewayRefusal as refusal:
        return refusal.response
    recorded = RecordedDelegation(ctx.executions, delegation, notifier=ctx.slack, spawn=ctx.spawn)
    relay = QueuedRelay()
    run = recorded.run_on_the_line(ctx.pool, relay.answer, relay=relay)
    task = ctx.spawn(run, name=f"gateway-{recorded.execution_id}")
    headers = {EXECUTION_HEADER: recorded.execution_id}
    if not await relay.first(task):
        outcome = relay.outcome
        failure = outcome if isinstance(outcome, Exception) else RuntimeError("no answer came")
        return relay.on_delivery(gateway_error(failure, execution_id=recorded.execution_id))
    if request_id := relay.headers.get("request-id"):
        headers["request-id"] = request_id
    if relay.content is not None:
        answer = Response(relay.content, media_type="application/json", headers=headers)
        return relay.on_delivery(answer)
    headers["cache-control"] = "no-cache"
    media_type = "text/event-stream; charset=utf-8"
    return relay.on_delivery(StreamingResponse(relay.events(), media_type=media_type, headers=headers))


@router.post("/messages/count_tokens", summary="Count tokens, through one of the tenant's accounts")
async def count_tokens(request: Request, ctx: Ctx, caller: Caller) -> Response:
    try:
        body = await _json_body(request)
        organization_id = _organization(request, caller)
        answer = await ctx.light_calls.count_tokens(organization_id, body, _forwarded(request))
    except GatewayRefusal as refusal:
        return refusal.response
    except Exception as exc:  # the pool's refusals and upstream failures, in Anthropic's shape
        return gateway_error(exc)
    return _raw(answer)


@router.get("/models", summary="The models the tenant's accounts can use (cached briefly)")
async def list_models(request: Request, ctx: Ctx, caller: Caller) -> Response:
    return await _models(request, ctx, caller, "/v1/models")


@router.get("/models/{model_id}", summary="One model")
async def get_model(model_id: str, request: Request, ctx: Ctx, caller: Caller) -> Response:
    return await _models(request, ctx, caller, f"/v1/models/{model_id}")


async def _models(request: Request, ctx: ApiContext, caller: Principal, path: str) -> Response:
    try:
        organization_id = _organization(request, caller)
        params = dict(request.query_params)
        answer = await ctx.light_calls.models(organization_id, path, params, _forwarded(request))
    except GatewayRefusal as refusal:
        return refusal.response
    except Exception as exc:
        return gateway_error(exc)
    return _raw(answer)


def _raw(answer: RawAnswer) -> Response:
    headers = {"request-id": answer.request_id} if answer.request_id else None
    return Response(
        answer.content, status_code=answer.status, media_type=answer.content_type, headers=headers
    )


async def _json_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        shown = content_type or "none"
        raise GatewayRefusal(
            415,
            "invalid_request_error",
            f"Content-Type is {shown}: send the body as JSON with 'Content-Type: application/json'",
        )
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise GatewayRefusal(400, "invalid_request_error", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise GatewayRefusal(400, "invalid_request_error", "body: Input should be an object")
    return body


def _caller(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):  # only reachable without the auth middleware
        raise RuntimeError("the auth middleware is not installed")
    return principal


def _organization(request: Request, caller: Principal) -> str:
    """The organization whose accounts serve: the header's, else the token's only one."""
    named = request.headers.get(ORGANIZATION_HEADER)
    if named:
        if not caller.can_see(named):
            raise GatewayRefusal(
                403, "permission_error", f"this token may not act for organization {named!r}"
            )
        return named
    if caller.organizations is not None and len(caller.organizations) == 1:
        return next(iter(caller.organizations))
    raise GatewayRefusal(
        400,
        "invalid_request_error",
        f"this token may act for several organizations: name one with the {ORGANIZATION_HEADER} header",
    )


def _forwarded(request: Request) -> dict[str, str]:
    return {name: value for name in FORWARDED_HEADERS if (value := request.headers.get(name))}


def _delegation_request(
    body: dict[str, Any], organization_id: str, headers: dict[str, str]
) -> DelegationRequest:
    """The pool's request for a Messages body: what the pool reads (model, max_tokens, messages,
    system, stream, metadata.user_id) checked in upstream's words, the rest passed through."""
    for name in _REQUIRED:
        if name not in body:
            raise GatewayRefusal(400, "invalid_request_error", f"{name}: Field required")
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    try:
        return DelegationRequest(
            organization_id=organization_id,
            model=body["model"],
            max_tokens=body["max_tokens"],
            messages=body["messages"],
            system=body.get("system"),
            stream=body.get("stream") is True,
            user_id=user_id if isinstance(user_id, str) else None,
            extra_body={k: v for k, v in body.items() if k not in _MODELLED},
            anthropic_headers=headers,
            passthrough=True,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "body"
        raise GatewayRefusal(
            400, "invalid_request_error", f"{where}: {first.get('msg', 'invalid')}"
        ) from None
