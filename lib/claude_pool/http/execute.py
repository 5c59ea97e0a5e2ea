"""``POST /api/orchestrator/execute`` and ``GET /api/orchestrator/executions/{id}``.

The execute endpoint runs the delegation through the library's ``Pool`` inside the server process
itself, with no Prefect flow run in between: the lowest latency the system offers, since the
request goes from the HTTP handler straight to account selection and the Anthropic call. Each
execution is still recorded in ``orchestrator_executions`` (pending, running, then succeeded or
failed), announced on the event stream (each event naming the execution id), and noted in Slack's
activity channel, by the library's one :class:`~claude_pool.records.recorded.RecordedDelegation`.
An idempotency key returns the execution already made for it instead of running the request twice.

The delegation always runs as a background task held by the server; a waiting caller only awaits
it (shielded), so a client that hangs up does not leave its row half-written.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from claude_pool.core.errors import ClaudePoolError
from claude_pool.http.auth import Principal, current_principal
from claude_pool.http.context import ApiContext, get_context
from claude_pool.http.errors import ApiError, library_error_response
from claude_pool.http.schemas import ErrorBody, ExecuteBody, ExecutionOut
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.names import account_name
from claude_pool.records.recorded import Recorded, RecordedDelegation
from claude_pool.records.requests import delegation_request
from claude_pool.records.view import ExecutionView

__all__ = ["router"]

_ERRORS = {s: {"model": ErrorBody} for s in (400, 401, 403, 404, 413, 422, 429, 502, 503, 504)}
router = APIRouter(prefix="/api/orchestrator", tags=["orchestrator"], responses=_ERRORS)  # type: ignore[arg-type]

Ctx = Annotated[ApiContext, Depends(get_context)]
Caller = Annotated[Principal, Depends(current_principal)]


def _delegation_request(body: ExecuteBody) -> DelegationRequest:
    return delegation_request(
        body.organization_id,
        user_id=body.user_id,
        system=body.system,
        strategy=body.strategy,
        idempotency_key=body.idempotency_key,
        message=body.message,
        messages=None if body.messages is None else [m.model_dump() for m in body.messages],
        model=body.model,
        max_tokens=body.max_tokens,
        timeout_seconds=body.timeout_seconds,
        max_queue_seconds=body.max_queue_seconds,
    )


async def _named(ctx: ApiContext, execution: ExecutionView) -> ExecutionView:
    return execution.named(await account_name(ctx.pool.directory, execution.account_id))


def _json(execution: ExecutionView, status_code: int) -> JSONResponse:
    body = ExecutionOut.of(execution).model_dump(mode="json", by_alias=True)
    return JSONResponse(body, status_code=status_code)


def _answer(recorded: Recorded) -> JSONResponse:
    execution, failure = recorded.execution, recorded.error
    if failure is None:
        return _json(execution, 200)
    if isinstance(failure, ClaudePoolError):
        return library_error_response(failure, execution_id=execution.execution_id)
    unexpected = ApiError(500, "internal_error", "the execution failed unexpectedly; it has been logged")
    return unexpected.response(executionId=execution.execution_id)


@router.post(
    "/execute",
    response_model=ExecutionOut,
    responses={202: {"description": "accepted (wait=false): poll the execution"}},
    summary="Run a delegation through the pool (in this process)",
)
async def execute(body: ExecuteBody, ctx: Ctx, caller: Caller) -> JSONResponse:
    caller.require(body.organization_id)
    recorded = RecordedDelegation(
        ctx.executions, _delegation_request(body), notifier=ctx.slack, spawn=ctx.spawn
    )
    # Tried once: a caller waiting on the database is better told at once that it is away.
    execution = await recorded.start(patient=False)
    if not recorded.created:
        # The same idempotency key again: the execution we have, never a second run.
        return _json(await _named(ctx, execution), 200 if execution.finished else 202)
    task = ctx.spawn(recorded.run(ctx.pool), name=f"execution-{execution.execution_id}")
    if not body.wait:
        return JSONResponse(
            {
                "executionId": execution.execution_id,
                "status": execution.status,
                "statusUrl": f"/api/orchestrator/executions/{execution.execution_id}",
            },
            status_code=202,
        )
    return _answer(await asyncio.shield(task))


@router.get(
    "/executions/{execution_id}", response_model=ExecutionOut, summary="An execution's status and result"
)
async def get_execution(execution_id: str, ctx: Ctx, caller: Caller) -> ExecutionOut:
    organizations = None if caller.organizations is None else sorted(caller.organizations)
    row = await asyncio.to_thread(ctx.executions.get, execution_id, organization_ids=organizations)
    return ExecutionOut.of(await _named(ctx, ExecutionView.of(row)))
