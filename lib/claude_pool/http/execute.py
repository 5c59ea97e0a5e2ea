"""``POST /api/orchestrator/execute`` and ``GET /api/orchestrator/executions/{id}``.

The execute endpoint runs the delegation through the library's ``Pool`` inside the server process
itself, with no Prefect flow run in between: the lowest latency the system offers, since the
request goes from the HTTP handler straight to account selection and the Anthropic call. Each
execution is still recorded in ``orchestrator_executions`` (pending, running, then succeeded or
failed), announced on the event stream, and noted in Slack's activity channel. An idempotency key
returns the execution already made for it instead of running the request twice.

The delegation always runs as a background task held by the server; a waiting caller only awaits
it (shielded), so a client that hangs up does not leave its row half-written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from claude_pool.core.errors import ClaudePoolError, InvalidInput, NotificationError
from claude_pool.core.logs import log_event
from claude_pool.core.redaction import redact
from claude_pool.http.auth import Principal, current_principal
from claude_pool.http.context import ApiContext, get_context
from claude_pool.http.errors import error_response, library_error_response
from claude_pool.http.schemas import ErrorBody, ErrorDetail, ExecuteBody, ExecutionOut, UsageOut, camel
from claude_pool.pool.models import DelegationRequest, DelegationResult
from claude_pool.storage import ExecutionStatus, OrchestratorExecution

__all__ = ["execution_view", "router"]

logger = logging.getLogger("claude_pool.http.execute")

_ERRORS = {s: {"model": ErrorBody} for s in (400, 401, 403, 404, 413, 422, 502, 503, 504)}
router = APIRouter(prefix="/api/orchestrator", tags=["orchestrator"], responses=_ERRORS)  # type: ignore[arg-type]

Ctx = Annotated[ApiContext, Depends(get_context)]
Caller = Annotated[Principal, Depends(current_principal)]

# How long a Slack note may wait out Slack's rate limit before it is given up (it is only a note).
_SLACK_MAX_WAIT = 5.0


def _delegation_request(body: ExecuteBody) -> DelegationRequest:
    fields: dict[str, Any] = {
        "organization_id": body.organization_id,
        "user_id": body.user_id,
        "system": body.system,
        "strategy": body.strategy,
        "idempotency_key": body.idempotency_key,
    }
    if body.message is not None:
        fields["message"] = body.message
    if body.messages is not None:
        fields["messages"] = [m.model_dump() for m in body.messages]
    if body.model is not None:
        fields["model"] = body.model
    if body.max_tokens is not None:
        fields["max_tokens"] = body.max_tokens
    if body.timeout_seconds is not None:
        fields["deadline"] = time.time() + body.timeout_seconds
    try:
        return DelegationRequest.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = camel(".".join(str(p) for p in err["loc"])) or "messages"
        raise InvalidInput(field, str(err["msg"]).removeprefix("Value error, ")) from None


def execution_view(row: OrchestratorExecution, account_name: str | None) -> ExecutionOut:
    error = None
    if row.error_type is not None:
        error = ErrorDetail(type=row.error_type, message=redact(row.error_message or ""))
    try:
        details = json.loads(row.accounts_tried) if row.accounts_tried else []
    except ValueError:
        details = []
    return ExecutionOut(
        execution_id=row.id,
        organization_id=row.organization_id,
        user_id=row.user_id,
        idempotency_key=row.idempotency_key,
        status=row.status,
        model=row.model,
        text=row.response_text,
        stop_reason=row.stop_reason,
        account_id=row.account_id,
        account_name=account_name,
        usage=UsageOut(
            input_tokens=row.input_tokens or 0,
            output_tokens=row.output_tokens or 0,
            cache_creation_input_tokens=row.cache_creation_input_tokens or 0,
            cache_read_input_tokens=row.cache_read_input_tokens or 0,
        ),
        attempts=row.attempts,
        attempt_details=details,
        latency_ms=row.latency_ms,
        upstream_request_id=row.upstream_request_id,
        error=error,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


async def _account_name(ctx: ApiContext, account_id: str | None) -> str | None:
    if account_id is None:
        return None
    for account in await ctx.pool.directory.all():
        if account.id == account_id:
            return account.name
    return None


async def _note(
    ctx: ApiContext, request: DelegationRequest, row: OrchestratorExecution, name: str | None
) -> None:
    try:
        await ctx.slack.post_delegation_activity(
            organization_id=request.organization_id,
            user_id=request.user_id,
            account_name=name,
            status=row.status,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            latency_ms=row.latency_ms,
            model=request.model,
            max_wait=_SLACK_MAX_WAIT,
        )
    except NotificationError as exc:  # a note that could not be sent is logged, never fatal
        log_event(
            logger, logging.WARNING, "slack activity note not sent", error=exc.error, execution_id=row.id
        )


async def _run(
    ctx: ApiContext, execution_id: str, request: DelegationRequest
) -> tuple[OrchestratorExecution, Exception | None]:
    """The delegation and its recording; returns the final row and the error it ended with."""
    store = ctx.executions
    await asyncio.to_thread(store.mark_running, execution_id)
    result: DelegationResult | None = None
    failure: Exception | None = None
    try:
        async with store.kept_alive(execution_id, lease_seconds=ctx.pool.config.capacity.lease_timeout_seconds):
            result = await ctx.pool.delegate(request)
    except asyncio.CancelledError:
        # The server is shutting down mid-call: say so in the row rather than leave it running.
        await asyncio.shield(
            asyncio.to_thread(
                store.fail, execution_id, RuntimeError("server shut down"), status=ExecutionStatus.CANCELLED
            )
        )
        raise
    except Exception as exc:  # recorded as the execution's failure; mapped to a status by the caller
        failure = exc
    if result is not None:
        row = await asyncio.to_thread(store.succeed, execution_id, result)
        name: str | None = result.account_name
    else:
        assert failure is not None
        row = await asyncio.to_thread(store.fail, execution_id, failure)
        name = await _account_name(ctx, row.account_id)
        if not isinstance(failure, ClaudePoolError):
            logger.error("execution %s failed unexpectedly", execution_id, exc_info=failure)
    ctx.spawn(_note(ctx, request, row, name), name=f"slack-note-{execution_id}")
    return row, failure


def _answer(row: OrchestratorExecution, name: str | None, failure: Exception | None) -> JSONResponse:
    if failure is None:
        view = execution_view(row, name)
        return JSONResponse(view.model_dump(mode="json", by_alias=True), status_code=200)
    if isinstance(failure, ClaudePoolError):
        return library_error_response(failure, execution_id=row.id)
    return error_response(
        500, "internal_error", "the execution failed unexpectedly; it has been logged", executionId=row.id
    )


@router.post(
    "/execute",
    response_model=ExecutionOut,
    responses={202: {"description": "accepted (wait=false): poll the execution"}},
    summary="Run a delegation through the pool (in this process)",
)
async def execute(body: ExecuteBody, ctx: Ctx, caller: Caller) -> JSONResponse:
    caller.require(body.organization_id)
    request = _delegation_request(body)
    row, created = await asyncio.to_thread(ctx.executions.start, request)
    if not created:
        # The same idempotency key again: the execution we have, never a second run.
        view = execution_view(row, await _account_name(ctx, row.account_id))
        status = 200 if row.status in ExecutionStatus.TERMINAL else 202
        return JSONResponse(view.model_dump(mode="json", by_alias=True), status_code=status)
    task = ctx.spawn(_run(ctx, row.id, request), name=f"execution-{row.id}")
    if not body.wait:
        return JSONResponse(
            {
                "executionId": row.id,
                "status": row.status,
                "statusUrl": f"/api/orchestrator/executions/{row.id}",
            },
            status_code=202,
        )
    final, failure = await asyncio.shield(task)
    name = await _account_name(ctx, final.account_id) if failure is None else None
    return _answer(final, name, failure)


@router.get(
    "/executions/{execution_id}", response_model=ExecutionOut, summary="An execution's status and result"
)
async def get_execution(execution_id: str, ctx: Ctx, caller: Caller) -> ExecutionOut:
    organizations = None if caller.organizations is None else sorted(caller.organizations)
    row = await asyncio.to_thread(ctx.executions.get, execution_id, organization_ids=organizations)
    return execution_view(row, await _account_name(ctx, row.account_id))
