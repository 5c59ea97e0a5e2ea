"""``repeating``: a step run every so often in the background while a block runs (keeping a lease,
beating an execution's heartbeat during a call), stopped when the block ends, however it ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["repeating"]


@contextlib.asynccontextmanager
async def repeating(
    interval: float, step: Callable[[], Awaitable[bool]], *, name: str
) -> AsyncIterator[None]:
    """Await ``step()`` every ``interval`` seconds while the block runs; a step that returns False
    ends the repetition (the block goes on). A step must handle its own errors."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            if not await step():
                return

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
