"""Breakers in Redis: one Lua script per operation, so every state change is one atomic call.

Time comes from the server unless a ``clock`` is injected (see :class:`StoreScripts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import redis.asyncio as aioredis

from claude_pool.breaker.model import (
    BreakerEffect,
    BreakerParams,
    BreakerRecord,
    BreakerView,
    State,
    StoreResult,
    Verdict,
)
from claude_pool.breaker.store import BreakerStore
from claude_pool.core.redis_client import connect
from claude_pool.core.redis_keys import RedisKeys
from claude_pool.core.redis_scripts import StoreScripts

__all__ = ["RedisBreakerStore"]

_SCRIPTS = ("allow", "record", "reset", "force_open", "views")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: Any) -> float | None:
    text = _text(value)
    return float(text) if text else None


def _result(reply: Sequence[Any]) -> StoreResult:
    (verdict, from_state, state, failures, opened_at, open_timeout, trips, epoch, now, until, reason) = (
        _text(v) for v in reply
    )
    record = BreakerRecord(
        state=State(state),
        failures=int(failures),
        opened_at=float(opened_at) if opened_at else None,
        open_timeout=float(open_timeout) if open_timeout else 0.0,
        trips=int(trips),
        epoch=int(epoch),
    )
    return StoreResult(
        verdict=Verdict(verdict),
        from_state=State(from_state),
        record=record,
        now=float(now),
        until=float(until) if until else None,
        reason=reason,
    )


class RedisBreakerStore(BreakerStore):
    backend: ClassVar[str] = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "claude-pool",
        clock: Callable[[], float] | None = None,
        owns_client: bool = False,
    ) -> None:
        self._keys = RedisKeys(prefix)
        self._scripts = StoreScripts(client, "breaker", _SCRIPTS, clock=clock, owns_client=owns_client)
        self._call = self._scripts.call

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "claude-pool", clock: Callable[[], float] | None = None
    ) -> RedisBreakerStore:
        return cls(connect(url), prefix=prefix, clock=clock, owns_client=True)

    def _account_keys(self, account_id: str) -> list[str]:
        return [self._keys.breaker(account_id), self._keys.breaker_probes(account_id)]

    async def allow(self, account_id: str, params: BreakerParams, *, token: str) -> StoreResult:
        args = [params.half_open_max_calls, params.probe_ttl_seconds, token]
        return _result(await self._call("allow", self._account_keys(account_id), args))

    async def record(
        self,
        account_id: str,
        effect: BreakerEffect,
        params: BreakerParams,
        *,
        token: str | None,
        epoch: int | None,
    ) -> StoreResult:
        args = [
            effect.value,
            token or "",
            "" if epoch is None else epoch,
            params.failure_threshold,
            params.timeout_seconds,
            params.backoff_multiplier,
            params.max_timeout_seconds,
        ]
        return _result(await self._call("record", self._account_keys(account_id), args))

    async def reset(self, account_id: str, *, reason: str) -> StoreResult:
        return _result(await self._call("reset", self._account_keys(account_id), [reason]))

    async def force_open(
        self, account_id: str, params: BreakerParams, *, reason: str, seconds: float | None
    ) -> StoreResult:
        args = [
            reason,
            "" if seconds is None else seconds,
            params.timeout_seconds,
            params.backoff_multiplier,
            params.max_timeout_seconds,
        ]
        return _result(await self._call("force_open", self._account_keys(account_id), args))

    async def views(self, account_ids: Sequence[str]) -> dict[str, BreakerView]:
        ids = list(dict.fromkeys(account_ids))
        if not ids:
            return {}
        keys = [key for account_id in ids for key in self._account_keys(account_id)]
        rows = list(await self._call("views", keys, []))[1:]
        return {account_id: _view(account_id, rows[7 * i : 7 * i + 7]) for i, account_id in enumerate(ids)}

    async def aclose(self) -> None:
        await self._scripts.aclose()


def _view(account_id: str, row: Sequence[Any]) -> BreakerView:
    state, failures, opened_at, open_until, trips, probes, epoch = row
    return BreakerView(
        account_id=account_id,
        state=State(_text(state)),
        consecutive_failures=int(_text(failures)),
        opened_at=_number(opened_at),
        open_until=_number(open_until),
        trips=int(_text(trips)),
        probes_in_flight=int(_text(probes)),
        epoch=int(_text(epoch)),
    )
