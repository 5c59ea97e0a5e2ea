"""Stopping a background task and waiting for it, without swallowing the waiter's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it to end. Its cancellation is expected and not raised; the
    waiter's own is, which suppressing every CancelledError would swallow (a pool closing on
    shutdown would then carry on as if never cancelled). An error the task ended with is raised."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
