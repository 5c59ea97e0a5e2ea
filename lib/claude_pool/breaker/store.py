"""The contract every breaker store keeps.

Each method is one atomic step against state shared by every worker (a Lua script on Redis, one
``BEGIN IMMEDIATE`` transaction in the embedded SQLite file), so that two workers can never both
see themselves as the one that opened the circuit, or both take the last probe slot. A store that
cannot reach its backend raises :class:`claude_pool.core.errors.BackendUnavailable`; it never guesses a
state.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from claude_pool.breaker.model import BreakerEffect, BreakerParams, BreakerView, StoreResult
from claude_pool.core.closing import AsyncClosing

__all__ = ["BreakerStore"]


class BreakerStore(AsyncClosing):
    backend: ClassVar[str]

    @abstractmethod
    async def allow(self, account_id: str, params: BreakerParams, *, token: str) -> StoreResult:
        """Admit a call. Verdict ``probe`` means a probe slot named ``token`` is now held until
        ``params.probe_ttl_seconds`` from now."""

    @abstractmethod
    async def record(
        self,
        account_id: str,
        effect: BreakerEffect,
        params: BreakerParams,
        *,
        token: str | None,
        epoch: int | None,
    ) -> StoreResult:
        """A call's result. ``token`` names the probe slot it held (``None``: not a probe);
        ``epoch`` is the record's epoch when the call was let through (``None``: current)."""

    @abstractmethod
    async def views(self, account_ids: Sequence[str]) -> dict[str, BreakerView]:
        """Every named account's breaker, in one round trip; unknown accounts read as closed."""

    @abstractmethod
    async def reset(self, account_id: str, *, reason: str) -> StoreResult: ...

    @abstractmethod
    async def force_open(
        self, account_id: str, params: BreakerParams, *, reason: str, seconds: float | None
    ) -> StoreResult: ...
