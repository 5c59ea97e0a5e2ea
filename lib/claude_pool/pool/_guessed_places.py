"""Places in a queue given on a cold store's guess, and the wake-up when the guess is replaced.

With ``capacity.coldStart: empty`` a bucket nobody has calibrated is taken as empty, so a request
queued on it is given a place at the refill rate. Once any answer's ``anthropic-ratelimit-*``
headers have calibrated the bucket (this worker's, or another's through the shared store), those
places may be far too late: the requests give them back and ask again.
"""

from __future__ import annotations

import asyncio

from claude_pool.capacity import Candidate, CapacityStore, Reservation
from claude_pool.core.cancelling import cancel_and_wait
from claude_pool.core.errors import BackendUnavailable

__all__ = ["GuessedPlaces"]

# How often a worker with requests waiting on a guess asks the store whether another worker's
# answer has calibrated the bucket: only while such requests wait, a few seconds after a cold start.
POLL_SECONDS = 0.1


class GuessedPlaces:
    def __init__(self, capacity: CapacityStore) -> None:
        self._capacity = capacity
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}

    async def sleep(self, reservation: Reservation, candidate: Candidate, wait: float) -> bool:
        """Sleep ``wait`` seconds; True when woken before because the bucket was calibrated after
        this place was given on a guess (see ``Reservation.levels_known``)."""
        if reservation.levels_known:
            await asyncio.sleep(wait)
            return False
        bucket_id = reservation.bucket_id
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(bucket_id, set()).add(woken)
        watcher = self._watchers.get(bucket_id)
        if watcher is None or watcher.done():
            self._watchers[bucket_id] = asyncio.create_task(self._watch(candidate))
        try:
            done, _ = await asyncio.wait({woken}, timeout=wait)
        finally:
            self._waiting.get(bucket_id, set()).discard(woken)
            woken.cancel()
        return bool(done)

    def calibrated(self, bucket_id: str) -> None:
        """An answer has calibrated the bucket: every place given on its guess is given back."""
        for woken in self._waiting.pop(bucket_id, set()):
            if not woken.done():
                woken.set_result(None)

    async def _watch(self, candidate: Candidate) -> None:
        """Ask the store, while requests of this worker wait on the bucket's guess, whether another
        worker's answer has calibrated it."""
        bucket_id = candidate.bucket_id
        while self._waiting.get(bucket_id):
            await asyncio.sleep(POLL_SECONDS)
            try:
                (view,) = await self._capacity.view([candidate])
            except BackendUnavailable:
                continue  # the waiters' own sleep still ends at their place
            if view.levels_known:
                self.calibrated(bucket_id)

    async def aclose(self) -> None:
        await cancel_and_wait(*self._watchers.values())
        self._watchers.clear()
