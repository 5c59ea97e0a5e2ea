"""A relayed stream between the pool and the drop-in endpoint's client.

The delegation runs as a server task and hands each upstream event to a :class:`QueuedRelay`, and
its outcome as soon as it is known (before it is recorded); the route waits for whichever comes
first, the stream's start or the outcome. Before the
start nothing has reached the client, so a failure (after the pool's fail-overs) is answered as an
error response; after it, events go out as they arrive, and a failure ends the stream with an
``error`` event (upstream's own when it sent one), never a silent truncation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from starlette.background import BackgroundTask
from starlette.responses import Response

from claude_pool.http.anthropic_errors import anthropic_error_event
from claude_pool.pool.models import DelegationResult
from claude_pool.records.recorded import Recorded

__all__ = ["QueuedRelay"]

_END = b""  # put when the delegation ends: no event is empty

#: How long a recording waits for its answer to go out before it goes ahead anyway.
DELIVERY_WAIT = 2.0


class QueuedRelay:
    """The pool's :class:`~claude_pool.pool.upstream.EventRelay` for one client."""

    def __init__(self) -> None:
        self.headers: Mapping[str, str] = {}
        self.started = asyncio.Event()
        self.answered = asyncio.Event()
        self._delivered = asyncio.Event()
        self.outcome: DelegationResult | Exception | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._ended_with_error = False

    async def answer(self, outcome: DelegationResult | Exception) -> None:
        """The delegation's outcome, as soon as it is known; returns once the answer has gone out
        (:meth:`delivered`, at most ``DELIVERY_WAIT`` seconds later), so that the recording that
        follows it does not hold the event loop while the client waits."""
        self.outcome = outcome
        self.answered.set()
        self._queue.put_nowait(_END)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._delivered.wait(), DELIVERY_WAIT)

    def on_delivery(self, response: Response) -> Response:
        """``response``, which tells this relay once it has been sent (a client that went away
        never sends it: the delivery wait's bound applies)."""

        async def delivered() -> None:
            self._delivered.set()

        response.background = BackgroundTask(delivered)
        return response

    async def start(self, headers: Mapping[str, str]) -> None:
        self.headers = headers
        self.started.set()

    async def event(self, raw: bytes) -> None:
        self._ended_with_error = raw.startswith(b"event: error")
        self._queue.put_nowait(raw)

    async def first(self, delegation: asyncio.Task[Recorded]) -> bool:
        """Wait for the stream's start (True) or the outcome before it (False). A delegation that
        ends without an outcome (a bug) raises here as itself."""
        waiters = {asyncio.ensure_future(self.started.wait()), asyncio.ensure_future(self.answered.wait())}
        try:
            await asyncio.wait({*waiters, delegation}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not self.started.is_set() and not self.answered.is_set():
            delegation.result()
            raise RuntimeError("the delegation ended without an outcome")
        return self.started.is_set()

    async def events(self) -> AsyncIterator[bytes]:
        """Every event as it arrives, then an ``error`` event if the stream failed after its start
        and upstream's own error event was not the last one relayed."""
        while (raw := await self._queue.get()) is not _END:
            yield raw
        if isinstance(self.outcome, Exception) and not self._ended_with_error:
            yield anthropic_error_event(self.outcome)
