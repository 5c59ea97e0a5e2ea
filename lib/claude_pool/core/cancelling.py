"""Stopping background tasks and waiting for them, without swallowing the waiter's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel every one of ``tasks``, then wait for each to end. Their cancellation is expected and
    not raised; the waiter's own is, which suppressing every CancelledError would swallow (a pool
    closing on shutdown would then carry on as if never cancelled); every task has been cancelled
    by then. An error a task ended with is raised."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
