"""``GET /health``: the one route that answers without a token, for load balancers and probes.

It says whether the database and Redis (when configured) answer, whether Slack is configured, and
how many accounts are active, open-circuit, cooling down or set aside; 503 when the database or
Redis is down. It shows counts and component names only: no URL, no account, no error text that
could describe the infrastructure to an anonymous caller (the details go to the log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from claude_pool.core.logs import log_event
from claude_pool.http.context import ApiContext, get_context
from claude_pool.storage import AccountStatus

__all__ = ["router"]

logger = logging.getLogger("claude_pool.http.health")
router = APIRouter(tags=["health"])

Ctx = Annotated[ApiContext, Depends(get_context)]
_CHECK_TIMEOUT = 3.0


async def _database(ctx: ApiContext) -> dict[str, Any]:
    try:
        await asyncio.wait_for(asyncio.to_thread(ctx.runtime.db.ping), _CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "down"; the detail is logged, not shown
        log_event(logger, logging.WARNING, "health: database down", error=f"{type(exc).__name__}: {exc}")
        return {"status": "down", "dialect": ctx.runtime.db.dialect}
    return {"status": "up", "dialect": ctx.runtime.db.dialect}


async def _redis(ctx: ApiContext) -> dict[str, Any]:
    url = ctx.runtime.settings.redis_url
    if not url:
        return {"status": "not_configured"}
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(
        url, socket_connect_timeout=_CHECK_TIMEOUT, socket_timeout=_CHECK_TIMEOUT
    )
    try:
        await asyncio.wait_for(client.ping(), _CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "down"
        log_event(logger, logging.WARNING, "health: redis down", error=f"{type(exc).__name__}: {exc}")
        return {"status": "down"}
    finally:
        await client.aclose()
    return {"status": "up"}


async def _pool(ctx: ApiContext) -> dict[str, Any]:
    pool = ctx.pool
    accounts = await pool.directory.all()
    active = [a for a in accounts if a.status == AccountStatus.ACTIVE]
    summary: dict[str, Any] = {
        "total": len(accounts),
        "active": 0,
        "openCircuit": 0,
        "coolingDown": 0,
        "disabled": sum(a.status == AccountStatus.DISABLED for a in accounts),
        "invalidCredentials": sum(a.status == AccountStatus.INVALID_CREDENTIALS for a in accounts),
        "spendExhausted": sum(a.status == AccountStatus.SPEND_EXHAUSTED for a in accounts),
    }
    if active:
        breakers = await pool.breaker.states([a.id for a in active])
        buckets = await pool.capacity.view([a.candidate for a in active])
        now = time.time()
        cooling = {b.account_id for b in buckets if b.cooldown_until is not None and b.cooldown_until > now}
        for account in active:
            view = breakers.get(account.id)
            if view is not None and not view.available:
                summary["openCircuit"] += 1
            elif account.id in cooling:
                summary["coolingDown"] += 1
            else:
                summary["active"] += 1
    return summary


@router.get("/health", summary="Liveness and readiness (no token needed)")
async def health(ctx: Ctx) -> JSONResponse:
    database, redis_state = await asyncio.gather(_database(ctx), _redis(ctx))
    body: dict[str, Any] = {
        "database": database,
        "redis": redis_state,
        "slack": {"status": "configured" if ctx.slack.enabled else "not_configured"},
    }
    healthy = database["status"] == "up" and redis_state["status"] != "down"
    if healthy:
        try:
            body["pool"] = await asyncio.wait_for(_pool(ctx), _CHECK_TIMEOUT)
        except Exception as exc:  # the pool summary is informative; its failure is not an outage
            log_event(
                logger, logging.WARNING, "health: pool summary failed", error=f"{type(exc).__name__}: {exc}"
            )
            body["pool"] = None
    body["status"] = "ok" if healthy else "unavailable"
    return JSONResponse(body, status_code=200 if healthy else 503)
