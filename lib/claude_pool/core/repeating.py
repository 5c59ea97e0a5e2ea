"""``repeating``: a step run every so often in the background while a block runs (keeping a lease,
beating an execution's heartbeat during a call), stopped when the block ends, however it ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from claude_pool.core.cancelling import cancel_and_wait

__all__ = ["repeating"]


@contextlib.asynccontextmanager
async def repeating(
    interval: float, step: Callable[[], Awaitable[bool]], *, name: str
) -> AsyncIterator[None]:
    """Await ``step()`` every ``interval`` seconds while the block runs; a step that returns False
    ends the repetition (the block goes on). A step must handle its own errors."""
    stopped = False

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            # Checked after the step too: a step can miss its cancellation (on Python 3.11
            # asyncio.wait_for, which redis-py sends every command through, returns instead of
            # raising when what it waits for completes in the same turn), and the loop would then
            # go on for ever, with the block's end waiting for it.
            if stopped or not await step() or stopped:
                return

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        stopped = True
        await cancel_and_wait(task)
