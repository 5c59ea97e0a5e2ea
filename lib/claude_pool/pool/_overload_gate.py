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
from collections import deque
from collections.abc import AsyncIterator, Callable

from claude_pool.core.errors import Overloaded
from claude_pool.pool.classify import Outcome, OutcomeKind

__all__ = ["OverloadGate"]


class OverloadGate:
    """The gate of one worker. Requests wait at it in the order they came; when a back-off ends, the
    one that has waited longest goes first (the probe), so that a request whose probe met another
    529 waits behind the others instead of spending its every attempt on probes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._overloaded = False
        self._until = 0.0
        self._probing = False
        self._waiters: deque[asyncio.Future[bool]] = deque()  # True: go first; False: the gate opened
        self._timer: asyncio.TimerHandle | None = None

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
        if not self._overloaded:
            return False
        left, pause = time_left(), self._until - self._clock()
        if left is not None and pause > 0 and pause >= left:
            raise _too_late(pause)
        place: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(place)
        self._hand_on()
        try:
            return await asyncio.wait_for(asyncio.shield(place), timeout=left)
        except BaseException as exc:
            self._leave(place)
            if isinstance(exc, TimeoutError):
                raise _too_late(None) from None
            raise

    def _leave(self, place: asyncio.Future[bool]) -> None:
        """A waiter gone (its deadline, a cancellation): a probe's turn handed to it goes on."""
        if place in self._waiters:
            self._waiters.remove(place)
        elif place.done() and not place.cancelled() and place.result():
            self._probing = False
            self._hand_on()
        place.cancel()

    def _hand_on(self) -> None:
        """Open the gate to all, or let the longest waiter go first once the back-off is over."""
        if not self._overloaded:
            while self._waiters:
                self._waiters.popleft().set_result(False)
            return
        if self._probing or not self._waiters:
            return
        pause = self._until - self._clock()
        if pause > 0:
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(pause, self._back_off_over)
            return
        self._probing = True
        self._waiters.popleft().set_result(True)

    def _back_off_over(self) -> None:
        self._timer = None
        self._hand_on()

    def _after(self, outcome: Outcome | None, probe: bool) -> None:
        if outcome is not None and outcome.kind is OutcomeKind.OVERLOADED:
            # 529s of calls sent before the gate closed do not push it further
            if probe or not self._overloaded:
                self._overloaded = True
                self._until = self._clock() + (outcome.backoff_seconds or 0.0)
        elif outcome is not None and outcome.kind is OutcomeKind.SUCCESS:
            self._overloaded = False
        if probe:
            self._probing = False
        self._hand_on()


class _Turn:
    outcome: Outcome | None = None


def _too_late(pause: float | None) -> Overloaded:
    after = f" for {pause:.1f}s more" if pause is not None else ""
    return Overloaded(
        f"Anthropic answers 529 (overloaded) to every account; the pool is backing off{after}, past "
        "this request's deadline",
        retry_after=pause,
    )
