"""Stopping background tasks and waiting for them, without swallowing the waiter's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(*tasks: asyncio.Future[Any], ignore_errors: bool = False) -> None:
    """Cancel every one of ``tasks``, then wait for each to end. Their cancellation is expected and
    not raised. A cancellation of the waiter that arrives meanwhile is raised, which suppressing
    every CancelledError would swallow (a pool closing on shutdown would then carry on as if never
    cancelled); every task has been cancelled by then. One already on its way when this is called
    (from a ``finally`` of a cancelled block) is the caller's to carry on: every task is waited for
    first. An error a task ended with is raised, unless ``ignore_errors`` (its owner has told it
    already); then every task is waited for whatever the others ended with."""
    current = asyncio.current_task()
    already = current.cancelling() if current is not None else 0
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            if current is not None and current.cancelling() > already:
                raise
        except Exception:
            if not ignore_errors:
                raise
