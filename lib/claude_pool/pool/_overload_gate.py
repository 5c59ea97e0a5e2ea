"""Backing off as one when Anthropic answers 529 (overloaded).

An overload is upstream's, not an account's: every account answers the same until it passes. So
after a 529 the pool's requests do not each retry on their own schedule (each retry spends a unit
of an account's capacity and meets another 529); they wait at one gate until the back-off ends,
then one request goes first. Its answer opens the gate for all, or its 529 closes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from claude_pool.core.errors import Overloaded
from claude_pool.pool.classify import Outcome, OutcomeKind

__all__ = ["OverloadGate"]


class OverloadGate:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._overloaded = False
        self._until = 0.0
        self._probe: asyncio.Future[None] | None = None

    @contextlib.asynccontextmanager
    async def turn(self, time_left: Callable[[], float | None]) -> AsyncIterator[_Turn]:
        """Wait until a request may try (at once, unless a 529 closed the gate), within the time
        the request has left; raises ``Overloaded`` when the gate cannot open for it in time. Tell
        the turn the attempt's outcome; a turn left without one lets the next request try."""
        probe = await self._wait(time_left)
        turn = _Turn()
        try:
            yield turn
        finally:
            self._after(turn.outcome, probe)

    async def _wait(self, time_left: Callable[[], float | None]) -> bool:
        """True when the request goes first after a back-off (the probe)."""
        while self._overloaded:
            left, pause = time_left(), self._until - self._clock()
            if pause > 0:
                if left is not None and pause >= left:
                    raise _too_late(pause)
                await asyncio.sleep(pause)
            elif self._probe is None:
                self._probe = asyncio.get_running_loop().create_future()
                return True
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(self._probe), timeout=left)
                except TimeoutError:
                    raise _too_late(None) from None
        return False

    def _after(self, outcome: Outcome | None, probe: bool) -> None:
        if outcome is not None and outcome.kind is OutcomeKind.OVERLOADED:
            # 529s of calls sent before the gate closed do not push it further
            if probe or not self._overloaded:
                self._overloaded = True
                self._until = self._clock() + (outcome.backoff_seconds or 0.0)
        elif outcome is not None and outcome.kind is OutcomeKind.SUCCESS:
            self._overloaded = False
        if probe and self._probe is not None:
            self._probe.set_result(None)
            self._probe = None


class _Turn:
    outcome: Outcome | None = None


def _too_late(pause: float | None) -> Overloaded:
    after = f" for {pause:.1f}s more" if pause is not None else ""
    return Overloaded(
        f"Anthropic answers 529 (overloaded) to every account; the pool is backing off{after}, past "
        "this request's deadline",
        retry_after=pause,
    )
