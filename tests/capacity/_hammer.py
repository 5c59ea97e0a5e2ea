"""A worker process for the contention test: acquire as fast as possible, count what is granted."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from claude_pool.capacity import BucketLimits, Candidate, Demand, Usage, open_capacity_store
from claude_pool.core.settings import Settings

LIMITS = BucketLimits(rpm=600, itpm=1_000_000, otpm=1_000_000)  # requests bind: 600 + 10 per second
CANDIDATES = [Candidate(f"acct-{n}", f"acct-{n}", LIMITS) for n in range(3)]
DEMAND = Demand(100, 50)


def hammer(settings: Settings, duration: float, ready: Any, results: Any) -> None:
    """Run in its own process, on the capacity store ``settings`` call for: wait at the ``ready``
    barrier, hammer for ``duration``, put the counts on ``results``."""
    results.put(asyncio.run(_hammer(settings, ready, duration)))


async def _hammer(settings: Settings, ready: Any, duration: float) -> tuple:
    store = open_capacity_store(settings)
    granted: Counter[str] = Counter()
    attempts = 0
    try:
        await store.view(CANDIDATES)  # connected and warm before the clock starts
        await asyncio.to_thread(ready.wait)
        start_at = time.time()
        first = start_at
        last = first
        while time.time() < start_at + duration:
            sel = await store.acquire(CANDIDATES, DEMAND)
            attempts += 1
            last = time.time()
            if sel.reservation is None:
                await asyncio.sleep(0.001)
                continue
            granted[sel.reservation.bucket_id] += 1
            await store.settle(sel.reservation, Usage(100, 50))
    finally:
        await store.aclose()
    return dict(granted), first, last, attempts
