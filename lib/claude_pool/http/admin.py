"""``/api/v1/admin``: the account registry and the quota alerts, over HTTP.

Accounts are addressed by id only (never by name, which could match in another organization), and
an id outside the caller's organizations answers 404: whether it exists is not the caller's to know.
Each account is shown with its breaker state and live headroom, read from the shared stores.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlmodel import col, select

from claude_pool.core.errors import AccountNotFound, BackendUnavailable
from claude_pool.core.logs import log_event
from claude_pool.core.redaction import redact
from claude_pool.http.auth import Principal, current_principal
from claude_pool.http.context import ApiContext, get_context
from claude_pool.http.schemas import (
    AccountCreateBody,
    AccountOut,
    AccountUpdateBody,
    BreakerOut,
    CapacityOut,
    ErrorBody,
    QuotaAlertOut,
    RotateKeyBody,
)
from claude_pool.storage import ClaudeAccount, QuotaAlert

__all__ = ["router"]

logger = logging.getLogger("claude_pool.http.admin")

_ERRORS = {s: {"model": ErrorBody} for s in (401, 403, 404, 422, 503)}
router = APIRouter(prefix="/api/v1/admin", tags=["admin"], responses=_ERRORS)  # type: ignore[arg-type]

Ctx = Annotated[ApiContext, Depends(get_context)]
Caller = Annotated[Principal, Depends(current_principal)]
OrgFilter = Annotated[str | None, Query(alias="organizationId", max_length=64)]


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _load(ctx: ApiContext, account_id: str) -> ClaudeAccount | None:
    with ctx.runtime.db.session() as session:
        return session.get(ClaudeAccount, account_id)


async def _scoped(ctx: ApiContext, caller: Principal, account_id: str) -> ClaudeAccount:
    account = await asyncio.to_thread(_load, ctx, account_id)
    if account is None or not caller.can_see(account.organization_id):
        raise AccountNotFound(account_id)
    return account


async def _views(ctx: ApiContext, accounts: Sequence[ClaudeAccount]) -> list[AccountOut]:
    """The accounts with their breaker and headroom; without them (logged) if a store is down, so
    that the registry stays readable while Redis is away."""
    pool = ctx.pool
    ids = [a.id for a in accounts]
    breakers, buckets = {}, {}
    try:
        if ids:
            breakers = await pool.breaker.states(ids)
            known = {a.id: a for a in await pool.directory.all()}
            candidates = [known[i].candidate for i in ids if i in known]
            if candidates:
                buckets = {b.account_id: b for b in await pool.capacity.view(candidates)}
    except BackendUnavailable as exc:
        log_event(logger, logging.WARNING, "live account state unavailable", error=str(exc))
    out = []
    for account in accounts:
        view = ctx.runtime.accounts.view(account).model_dump()
        view["status_reason"] = redact(view["status_reason"]) if view["status_reason"] else None
        breaker, bucket = breakers.get(account.id), buckets.get(account.id)
        if breaker is not None:
            view["breaker"] = BreakerOut(
                state=breaker.state.value,
                consecutive_failures=breaker.consecutive_failures,
                open_until=_dt(breaker.open_until),
                trips=breaker.trips,
            )
        if bucket is not None:
            view["capacity"] = CapacityOut(
                bucket_id=bucket.bucket_id,
                headroom=round(bucket.headroom, 4),
                requests_remaining=bucket.requests,
                input_tokens_remaining=bucket.input_tokens,
                output_tokens_remaining=bucket.output_tokens,
                in_flight=bucket.in_flight,
                cooling_down_until=_dt(bucket.cooldown_until),
                levels_known=bucket.levels_known,
            )
        out.append(AccountOut.model_validate(view))
    return out


async def _one(ctx: ApiContext, account: ClaudeAccount) -> AccountOut:
    ctx.pool.directory.invalidate()  # the change must show in the live view and in selection
    return (await _views(ctx, [account]))[0]


@router.post("/claude-accounts", status_code=201, response_model=AccountOut, summary="Register an account")
async def register_account(body: AccountCreateBody, ctx: Ctx, caller: Caller) -> AccountOut:
    caller.require(body.organization_id)
    account = await asyncio.to_thread(ctx.runtime.accounts.register, body.model_dump(exclude_unset=True))
    log_event(logger, logging.INFO, "account registered", account_id=account.id, by=caller.token_id)
    return await _one(ctx, account)


@router.get("/claude-accounts", response_model=list[AccountOut], summary="List accounts")
async def list_accounts(
    ctx: Ctx,
    caller: Caller,
    organization_id: OrgFilter = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
) -> list[AccountOut]:
    if organization_id is not None:
        caller.require(organization_id)
    accounts = await asyncio.to_thread(
        ctx.runtime.accounts.list, organization_id=organization_id, status=status
    )
    return await _views(ctx, [a for a in accounts if caller.can_see(a.organization_id)])


@router.get("/claude-accounts/{account_id}", response_model=AccountOut, summary="Show an account")
async def get_account(account_id: str, ctx: Ctx, caller: Caller) -> AccountOut:
    return (await _views(ctx, [await _scoped(ctx, caller, account_id)]))[0]


@router.patch("/claude-accounts/{account_id}", response_model=AccountOut, summary="Change an account")
async def update_account(account_id: str, body: AccountUpdateBody, ctx: Ctx, caller: Caller) -> AccountOut:
    account = await _scoped(ctx, caller, account_id)
    changes = body.model_dump(exclude_unset=True)
    updated = await asyncio.to_thread(ctx.runtime.accounts.update, account.id, changes)
    return await _one(ctx, updated)


@router.post("/claude-accounts/{account_id}/disable", response_model=AccountOut, summary="Disable")
async def disable_account(account_id: str, ctx: Ctx, caller: Caller) -> AccountOut:
    account = await _scoped(ctx, caller, account_id)
    return await _one(ctx, await asyncio.to_thread(ctx.runtime.accounts.disable, account.id))


@router.post("/claude-accounts/{account_id}/enable", response_model=AccountOut, summary="Enable")
async def enable_account(account_id: str, ctx: Ctx, caller: Caller) -> AccountOut:
    account = await _scoped(ctx, caller, account_id)
    return await _one(ctx, await asyncio.to_thread(ctx.runtime.accounts.enable, account.id))


@router.post("/claude-accounts/{account_id}/rotate-key", response_model=AccountOut, summary="Rotate the key")
async def rotate_key(account_id: str, body: RotateKeyBody, ctx: Ctx, caller: Caller) -> AccountOut:
    account = await _scoped(ctx, caller, account_id)
    rotated = await asyncio.to_thread(ctx.runtime.accounts.rotate_api_key, account.id, body.api_key)
    log_event(logger, logging.INFO, "account key rotated", account_id=account.id, by=caller.token_id)
    return await _one(ctx, rotated)


@router.delete("/claude-accounts/{account_id}", status_code=204, summary="Remove an account")
async def delete_account(account_id: str, ctx: Ctx, caller: Caller) -> Response:
    account = await _scoped(ctx, caller, account_id)
    await asyncio.to_thread(ctx.runtime.accounts.delete, account.id)
    ctx.pool.directory.invalidate()
    log_event(logger, logging.INFO, "account removed", account_id=account.id, by=caller.token_id)
    return Response(status_code=204)


def _alerts(
    ctx: ApiContext,
    orgs: frozenset[str] | None,
    organization_id: str | None,
    account_id: str | None,
    limit: int,
) -> list[QuotaAlert]:
    with ctx.runtime.db.session() as session:
        query = select(QuotaAlert)
        if orgs is not None:
            query = query.where(col(QuotaAlert.organization_id).in_(sorted(orgs)))
        if organization_id is not None:
            query = query.where(QuotaAlert.organization_id == organization_id)
        if account_id is not None:
            query = query.where(QuotaAlert.account_id == account_id)
        return list(session.exec(query.order_by(col(QuotaAlert.created_at).desc()).limit(limit)))


@router.get("/quota-alerts", response_model=list[QuotaAlertOut], summary="Quota alerts, newest first")
async def list_quota_alerts(
    ctx: Ctx,
    caller: Caller,
    organization_id: OrgFilter = None,
    account_id: Annotated[str | None, Query(alias="accountId", max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[QuotaAlertOut]:
    if organization_id is not None:
        caller.require(organization_id)
    rows = await asyncio.to_thread(_alerts, ctx, caller.organizations, organization_id, account_id, limit)
    return [
        QuotaAlertOut.model_validate(
            {**row.model_dump(), "last_error": redact(row.last_error) if row.last_error else None}
        )
        for row in rows
    ]
