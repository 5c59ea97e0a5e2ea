"""The circuit breaker the pool talks to: admission, results, views, and who is told of changes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Protocol

from claude_pool.breaker.listeners import BreakerListener
from claude_pool.breaker.model import (
    DEFAULT_PROBE_TTL_SECONDS,
    BreakerEffect,
    BreakerParams,
    BreakerView,
    Denied,
    Permit,
    State,
    StoreResult,
    Transition,
    Verdict,
)
from claude_pool.breaker.store import BreakerStore
from claude_pool.core.config import BreakerConfig

__all__ = ["CircuitBreaker"]

_log = logging.getLogger("claude_pool.breaker")


class HasBreakerEffect(Protocol):
    """An outcome (``claude_pool.pool.classify.Outcome``) that says what it does to the breaker."""

    @property
    def breaker(self) -> BreakerEffect: ...


class CircuitBreaker:
    """Per-account breakers shared by every worker that uses the same ``store``.

    ``allow`` before a call, ``record`` with the permit after it. The store makes each step atomic;
    this class turns its answers into permits and transitions and tells the listeners.
    """

    def __init__(
        self,
        store: BreakerStore,
        config: BreakerConfig | None = None,
        *,
        listeners: Iterable[BreakerListener] = (),
        probe_ttl_seconds: float = DEFAULT_PROBE_TTL_SECONDS,
    ) -> None:
        self.store = store
        self.params = BreakerParams.from_config(
            config or BreakerConfig(), probe_ttl_seconds=probe_ttl_seconds
        )
        self._listeners: list[BreakerListener] = list(listeners)

    # --- listeners -------------------------------------------------------------------------
    @property
    def listeners(self) -> tuple[BreakerListener, ...]:
        return tuple(self._listeners)

    def add_listener(self, listener: BreakerListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: BreakerListener) -> None:
        self._listeners.remove(listener)

    # --- the call path ---------------------------------------------------------------------
    async def allow(self, account_id: str) -> Permit | Denied:
        """May a call go to ``account_id`` now? A half-open circuit lets through at most
        ``half_open_max_calls`` probes at a time across all workers; the permit says if it is one."""
        token = uuid.uuid4().hex
        result = await self.store.allow(account_id, self.params, token=token)
        await self._announce(account_id, result)
        if result.verdict is Verdict.DENY:
            denied = Denied(
                account_id, result.record.effective_state(result.now), result.until, result.reason
            )
            await self._notify("on_denied", denied)
            return denied
        probe = result.verdict is Verdict.PROBE
        # The token travels in the permit only for probes: that is how record() knows which slot.
        return Permit(account_id, probe=probe, token=token if probe else None, epoch=result.record.epoch)

    def closed_permit(self, view: BreakerView) -> Permit | None:
        """The permit :meth:`allow` would give, without its store round, when ``view`` (read just
        before, on the call path) shows a closed circuit: a closed breaker lets every call through
        and changes nothing when it does, so asking again could only differ if another worker
        opened it in between, a race that ``allow`` itself has with the call that follows it.
        The permit carries the view's epoch: if the circuit opened meanwhile, the result counts for
        nothing. None otherwise (open or half-open: probe slots are taken in the store)."""
        if view.state is not State.CLOSED:
            return None
        return Permit(view.account_id, probe=False, token=None, epoch=view.epoch)

    async def record(
        self,
        account_id: str,
        effect: BreakerEffect | HasBreakerEffect,
        *,
        permit: Permit | None = None,
    ) -> Transition | None:
        """Record how a call let through by ``permit`` ended. ``not_counted`` changes nothing but
        gives a probe slot back. Without a permit the result counts against the current epoch."""
        if not isinstance(effect, BreakerEffect):
            effect = effect.breaker
        effect = BreakerEffect(effect)
        if permit is not None and permit.account_id != account_id:
            raise ValueError(f"permit for {permit.account_id!r} recorded against {account_id!r}")
        token = permit.token if permit is not None and permit.probe else None
        epoch = permit.epoch if permit is not None else None
        result = await self.store.record(account_id, effect, self.params, token=token, epoch=epoch)
        await self._notify("on_record", account_id, effect, probe=token is not None)
        return await self._announce(account_id, result)

    async def states(self, account_ids: Sequence[str]) -> dict[str, BreakerView]:
        """Every named account's breaker, read in one round trip."""
        return await self.store.views(account_ids)

    async def state(self, account_id: str) -> BreakerView:
        return (await self.store.views([account_id]))[account_id]

    async def reset(self, account_id: str, *, reason: str = "reset by operator") -> Transition | None:
        return await self._announce(account_id, await self.store.reset(account_id, reason=reason))

    async def force_open(
        self, account_id: str, reason: str, *, seconds: float | None = None
    ) -> Transition | None:
        """Open the circuit now, for ``seconds`` or the current trip's timeout."""
        result = await self.store.force_open(account_id, self.params, reason=reason, seconds=seconds)
        return await self._announce(account_id, result)

    async def aclose(self) -> None:
        await self.store.aclose()

    # --- internals -------------------------------------------------------------------------
    async def _announce(self, account_id: str, result: StoreResult) -> Transition | None:
        if not result.changed:
            return None
        rec = result.record
        transition = Transition(
            account_id=account_id,
            from_state=result.from_state,
            to_state=rec.state,
            reason=result.reason,
            consecutive_failures=rec.failures,
            open_until=rec.open_until if rec.state is State.OPEN else None,
            at=result.now,
            trips=rec.trips,
        )
        await self._notify("on_transition", transition)
        return transition

    async def _notify(self, hook: str, *args: object, **kwargs: object) -> None:
        for listener in self._listeners:
            try:
                await getattr(listener, hook)(*args, **kwargs)
            except Exception:
                _log.exception("breaker listener %r failed in %s", listener, hook)
