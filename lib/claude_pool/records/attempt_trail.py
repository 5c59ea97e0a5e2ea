"""Every attempt of a request in flight, so that the record of a delegation that fails says what
each account answered (the pool's error carries only the last reason)."""

from __future__ import annotations

from claude_pool.pool import Pool
from claude_pool.pool.listeners import PoolListener
from claude_pool.pool.models import AttemptRecord, DelegationRequest

__all__ = ["AttemptTrail"]


class AttemptTrail(PoolListener):
    """A pool listener keeping the attempts of the requests being followed, by request object."""

    def __init__(self) -> None:
        self._followed: dict[int, list[AttemptRecord]] = {}

    @classmethod
    def of(cls, pool: Pool) -> AttemptTrail:
        """The pool's trail, added to its listeners on first use (one per pool, never removed)."""
        for listener in pool.listeners:
            if isinstance(listener, cls):
                return listener
        trail = cls()
        pool.listeners.append(trail)
        return trail

    def follow(self, request: DelegationRequest) -> list[AttemptRecord]:
        """The list the attempts of ``request`` are added to, until :meth:`forget`."""
        return self._followed.setdefault(id(request), [])

    def forget(self, request: DelegationRequest) -> None:
        self._followed.pop(id(request), None)

    async def on_attempt(self, request: DelegationRequest, attempt: AttemptRecord) -> None:
        attempts = self._followed.get(id(request))
        if attempts is not None:
            attempts.append(attempt)
