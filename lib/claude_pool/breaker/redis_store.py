"""Breakers in Redis: one Lua script per operation, so every state change is one atomic call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, ClassVar, TypeVar

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

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
from claude_pool.core.errors import BackendUnavailable
from claude_pool.core.redaction import redact
from claude_pool.core.redis_client import connect
from claude_pool.core.redis_keys import RedisKeys

__all__ = ["RedisBreakerStore"]

_T = TypeVar("_T")
_OPERATIONS = ("allow", "record", "reset", "force_open", "states")


def _script_source(operation: str) -> str:
    lua = resources.files("claude_pool.breaker") / "lua"
    prelude = (lua / "breaker_common.lua").read_text(encoding="utf-8")
    return prelude + "\n" + (lua / f"breaker_{operation}.lua").read_text(encoding="utf-8")


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

    def __init__(self, client: aioredis.Redis, *, keys: RedisKeys | None = None, owns_client: bool = False):
        self._client = client
        self._keys = keys or RedisKeys()
        self._owns_client = owns_client
        # register_script hashes once and runs EVALSHA, loading the script again on NOSCRIPT.
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(_script_source(name)) for name in _OPERATIONS
        }

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "claude-pool") -> RedisBreakerStore:
        return cls(connect(url), keys=RedisKeys(prefix), owns_client=True)

    def _account_keys(self, account_id: str) -> list[str]:
        return [self._keys.breaker(account_id), self._keys.breaker_probes(account_id)]

    async def _call(self, operation: str, keys: list[str], args: list[Any], parse: Callable[[Any], _T]) -> _T:
        script = self._scripts[operation]
        try:
            reply: Awaitable[Any] = script(keys=keys, args=args)
            return parse(await reply)
        except (RedisError, OSError) as exc:
            raise BackendUnavailable("redis", f"breaker {operation}: {redact(str(exc))}") from exc

    async def allow(self, account_id: str, params: BreakerParams, *, token: str) -> StoreResult:
        args = [params.half_open_max_calls, params.probe_ttl_seconds, token]
        return await self._call("allow", self._account_keys(account_id), args, _result)

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
        return await self._call("record", self._account_keys(account_id), args, _result)

    async def reset(self, account_id: str, *, reason: str) -> StoreResult:
        return await self._call("reset", self._account_keys(account_id), [reason], _result)

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
        return await self._call("force_open", self._account_keys(account_id), args, _result)

    async def views(self, account_ids: Sequence[str]) -> dict[str, BreakerView]:
        ids = list(dict.fromkeys(account_ids))
        if not ids:
            return {}
        keys = [key for account_id in ids for key in self._account_keys(account_id)]

        def parse(reply: Sequence[Any]) -> dict[str, BreakerView]:
            rows = list(reply)[1:]
            views: dict[str, BreakerView] = {}
            for i, account_id in enumerate(ids):
                state, failures, opened_at, open_until, trips, probes = rows[6 * i : 6 * i + 6]
                views[account_id] = BreakerView(
                    account_id=account_id,
                    state=State(_text(state)),
                    consecutive_failures=int(_text(failures)),
                    opened_at=_number(opened_at),
                    open_until=_number(open_until),
                    trips=int(_text(trips)),
                    probes_in_flight=int(_text(probes)),
                )
            return views

        return await self._call("states", keys, [], parse)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
