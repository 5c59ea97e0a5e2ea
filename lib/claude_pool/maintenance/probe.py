"""Probing accounts cheaply: a revoked key is marked, a recovered account is let back in.

A probe counts tokens (or sends a one-token message) with the account's key. It is the breaker's
half-open probe when the breaker has one to give, so a success closes a tripped circuit without
waiting for live traffic to risk it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from claude_pool.breaker import Permit
from claude_pool.pool import Pool
from claude_pool.pool.classify import BreakerEffect, OutcomeKind
from claude_pool.storage import AccountStatus

__all__ = ["ProbeResult", "probe_account"]

_PROBE_BODY = {"model": "", "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}


@dataclass(frozen=True)
class ProbeResult:
    account_id: str
    account_name: str
    ok: bool
    outcome: str
    status_before: str
    status_after: str
    breaker_before: str
    breaker_after: str
    latency_ms: float
    detail: str = ""


async def probe_account(
    pool: Pool, account_id: str, *, method: str = "count_tokens", model: str | None = None
) -> ProbeResult:
    account = await asyncio.to_thread(pool.accounts.get, account_id)
    views = await pool.breaker.states([account_id])
    breaker_before = views[account_id].state.value if account_id in views else "closed"
    body = {**_PROBE_BODY, "model": model or pool.config.health_check.model}
    # Take the breaker's probe slot when the circuit is half-open; a closed circuit lets it through,
    # an open one not yet due is left alone (the probe still checks the key).
    permit = await pool.breaker.allow(account_id)
    started = time.monotonic()
    error: BaseException | None = None
    try:
        api_key = pool.accounts.decrypt_api_key(account)
        if method == "message":
            await pool.upstream.create(api_key, body, timeout=30.0)
        else:
            await pool.upstream.count_tokens(api_key, body)
        del api_key
    except Exception as exc:  # classified below; never re-raised raw
        error = exc
    latency_ms = (time.monotonic() - started) * 1000
    outcome = pool.policy.classify(error, account_id=account_id)
    if isinstance(permit, Permit):
        await pool.breaker.record(
            account_id, outcome.breaker if error else BreakerEffect.SUCCESS, permit=permit
        )
    status_after = account.status
    if outcome.kind is OutcomeKind.BAD_CREDENTIALS and account.status != AccountStatus.INVALID_CREDENTIALS:
        reason = str(outcome.error)[:500] if outcome.error else "rejected by Anthropic"
        await asyncio.to_thread(
            pool.accounts.set_status, account_id, AccountStatus.INVALID_CREDENTIALS, reason=reason
        )
        status_after = AccountStatus.INVALID_CREDENTIALS
    elif error is None and account.status == AccountStatus.INVALID_CREDENTIALS:
        # The key works again (restored upstream): put the account back.
        await asyncio.to_thread(pool.accounts.set_status, account_id, AccountStatus.ACTIVE)
        status_after = AccountStatus.ACTIVE
    pool.directory.invalidate()
    after = await pool.breaker.states([account_id])
    return ProbeResult(
        account_id=account_id,
        account_name=account.name,
        ok=error is None,
        outcome=outcome.kind.value,
        status_before=account.status,
        status_after=status_after,
        breaker_before=breaker_before,
        breaker_after=after[account_id].state.value if account_id in after else "closed",
        latency_ms=round(latency_ms, 1),
        detail=str(outcome.error)[:300] if outcome.error else "",
    )
