"""Backing off as one when Anthropic answers 529 (overloaded).

An overload is upstream's, not an account's: every account answers the same until it passes. So
after a 529 the pool's requests do not each retry on their own schedule (each retry spends a unit
of an account's capacity and meets another 529); they wait at one gate until the back-off ends,
then one request goes first. Its answer opens the gate for all, or its 529 closes it again.
Given a ``SharedOverload``, the gates of every worker on one store take turns: one probe at a time
for all of them, and one probe's answer opens them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from claude_pool.core.errors import Overloaded
from claude_pool.pool._shared_overload import Claim, SharedOverload
from claude_pool.pool.classify import Outcome, OutcomeKind

__all__ = ["OverloadGate"]


class OverloadGate:
    """The gate of one worker. Requests wait at it in the order they came; when a back-off ends, the
    one that has waited longest goes first (the probe), so that a request whose probe met another
    529 waits behind the others instead of spending its every attempt on probes. A request on its
    last attempt goes first only when every waiter is: a probe's 529 would fail it, where it costs
    another request only one of its tries."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, shared: SharedOverload | None = None
    ) -> None:
        self._clock = clock
        self._shared = shared
        self._overloaded = False
        self._until = 0.0
        self._probing = False
        self._waiters: deque[asyncio.Future[bool]] = deque()  # True: go first; False: the gate opened
        self._last_tries: set[asyncio.Future[bool]] = set()  # waiters on their request's last attempt
        self._timer: asyncio.TimerHandle | None = None

    @contextlib.asynccontextmanager
    async def turn(
        self, time_left: Callable[[], float | None], *, last_try: bool = False
    ) -> AsyncIterator[_Turn]:
        """Wait until a request may try (at once, unless a 529 closed the gate), within the time
        the request has left; raises ``Overloaded`` when the gate cannot open for it in time.
        ``last_try``: this is the request's last attempt. Tell the turn the attempt's outcome; a
        turn left without one lets the next request try."""
        claim = await self._wait(time_left, last_try)
        turn = _Turn(probe=claim is not None)
        try:
            yield turn
        finally:
            try:
                await self._tell_shared(turn.outcome, claim)
            finally:
                self._after(turn.outcome, claim is not None)

    def lets_through(self, turn: _Turn) -> bool:
        """Whether a request given its turn may still send: not when the gate closed since (a 529
        met by another of this worker's calls, or heard from another worker), unless it is the
        probe; a request held back goes back to the gate, its place for capacity given back."""
        return turn.probe or not self._overloaded

    def closed_elsewhere(self, seconds: float) -> None:
        """Another worker met a 529: the shared gate is closed for ``seconds`` more. An open gate
        closes until then, so that this worker does not meet a 529 of its own to learn it."""
        if not self._overloaded and seconds > 0:
            self._overloaded = True
            self._until = self._clock() + seconds

    async def _wait(self, time_left: Callable[[], float | None], last_try: bool) -> Claim | None:
        """The claim of the request that goes first after a back-off (the probe); None for the
        others. With a shared gate, a request whose turn it is asks the store first: another
        worker's probe may be out (it then waits for that probe's answer at the head of the line),
        or answered (the gate opens for all)."""
        ahead = False
        while self._overloaded:
            left, pause = time_left(), self._until - self._clock()
            if left is not None and pause > 0 and pause >= left:
                raise _too_late(pause)
            if not await self._queue(left, ahead=ahead, last_try=last_try):
                return None
            claim = await self._claim()
            if claim.kind == "probe":
                return claim
            self._probing = False
            if claim.kind == "open":
                self._overloaded = False
            else:
                self._until = self._clock() + claim.wait_seconds
                ahead = True
            self._hand_on()
        return None

    async def _queue(self, left: float | None, *, ahead: bool, last_try: bool) -> bool:
        """Wait in line (at its head when ``ahead``); True when it is this request's turn to probe."""
        place: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if ahead:
            self._waiters.appendleft(place)
        else:
            self._waiters.append(place)
        if last_try:
            self._last_tries.add(place)
        self._hand_on()
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows our caller's cancellation when the
            # turn comes in the same moment, and a cancelled request would go on to probe.
            async with asyncio.timeout(left):
                return await asyncio.shield(place)
        except BaseException as exc:
            self._leave(place)
            if isinstance(exc, TimeoutError):
                raise _too_late(None) from None
            raise

    async def _claim(self) -> Claim:
        if self._shared is None:
            return Claim("probe")
        try:
            return await self._shared.claim()
        except BaseException:
            self._probing = False
            self._hand_on()
            raise

    async def _tell_shared(self, outcome: Outcome | None, claim: Claim | None) -> None:
        """Tell the other workers' gates what this attempt met: a probe's verdict, or the 529 of a
        call while this gate is open (once it is closed, the store has been told already)."""
        if self._shared is None:
            return
        overloaded = outcome is not None and outcome.kind is OutcomeKind.OVERLOADED
        token = claim.token if claim is not None else None
        if token is not None:
            if overloaded:
                await self._shared.met_529(token)
            elif outcome is not None and outcome.kind is OutcomeKind.SUCCESS:
                await self._shared.probe_answered(token)
            else:
                await self._shared.probe_released(token)
        elif overloaded and claim is None and not self._overloaded:
            await self._shared.met_529(None)

    def _leave(self, place: asyncio.Future[bool]) -> None:
        """A waiter gone (its deadline, a cancellation): a probe's turn handed to it goes on."""
        self._last_tries.discard(place)
        if place in self._waiters:
            self._waiters.remove(place)
        elif place.done() and not place.cancelled() and place.result():
            self._probing = False
            self._hand_on()
        place.cancel()

    def _hand_on(self) -> None:
        """Open the gate to all, or let the longest waiter go first once the back-off is over."""
        if not self._overloaded:
            self._last_tries.clear()
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
        first = next((w for w in self._waiters if w not in self._last_tries), self._waiters[0])
        self._waiters.remove(first)
        self._last_tries.discard(first)
        first.set_result(True)

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
    def __init__(self, *, probe: bool) -> None:
        self.probe = probe  # the request that goes first after a back-off
        self.outcome: Outcome | None = None


def _too_late(pause: float | None) -> Overloaded:
    after = f" for {pause:.1f}s more" if pause is not None else ""
    return Overloaded(
        f"Anthropic answers 529 (overloaded) to every account; the pool is backing off{after}, past "
        "this request's deadline",
        retry_after=pause,
    )
