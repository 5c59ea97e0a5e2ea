"""``cancel_and_wait``: a background task is stopped and waited for; the waiter's own
cancellation is never swallowed (the pool's background helpers close with it)."""

from __future__ import annotations

import asyncio

import pytest

from claude_pool.core.cancelling import cancel_and_wait

BOUND = 5.0  # seconds any awaited condition may take before the test fails


async def slow_to_stop(winding_down: float, started_winding: asyncio.Event | None = None) -> None:
    """A background task that takes ``winding_down`` seconds to end once cancelled."""
    try:
        await asyncio.sleep(60)
    finally:
        if started_winding is not None:
            started_winding.set()
        await asyncio.shield(asyncio.sleep(winding_down))


async def test_the_tasks_cancellation_is_expected_and_not_raised() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), BOUND)
    assert task.cancelled()


async def test_an_error_the_task_ended_with_is_raised() -> None:
    async def failing() -> None:
        raise ValueError("the task's own error")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="the task's own error"):
        await cancel_and_wait(task)


async def test_a_waiter_cancelled_while_the_task_winds_down_is_cancelled() -> None:
    """The task takes a while to end after its cancellation; the waiter (a pool closing on
    shutdown) is cancelled meanwhile: it must end cancelled, not carry on."""
    winding_down = asyncio.Event()
    task = asyncio.create_task(slow_to_stop(0.2, winding_down))
    await asyncio.sleep(0)
    carried_on = False

    async def closing() -> None:
        nonlocal carried_on
        await cancel_and_wait(task)
        carried_on = True

    closer = asyncio.create_task(closing())
    await asyncio.wait_for(winding_down.wait(), BOUND)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(closer, BOUND)
    assert not carried_on


async def test_every_task_is_cancelled_even_when_the_waiter_is_cancelled_on_the_first() -> None:
    first_winding_down = asyncio.Event()
    first = asyncio.create_task(slow_to_stop(0.2, first_winding_down))
    second = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    closer = asyncio.create_task(cancel_and_wait(first, second))
    await asyncio.wait_for(first_winding_down.wait(), BOUND)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(closer, BOUND)
    await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), BOUND)
    assert second.cancelled()


async def test_from_the_finally_of_a_cancelled_block_every_task_is_still_waited_for() -> None:
    """A block cancelled from outside stops its helpers on the way out: its cancellation carries
    on, after every helper has ended (not at the first one's expected CancelledError)."""
    started = asyncio.Event()
    helpers: list[asyncio.Task[None]] = []

    async def block() -> None:
        helpers.extend(asyncio.create_task(slow_to_stop(s)) for s in (0.05, 0.3))
        try:
            started.set()
            await asyncio.sleep(60)
        finally:
            await cancel_and_wait(*helpers)

    running = asyncio.create_task(block())
    await asyncio.wait_for(started.wait(), BOUND)
    await asyncio.sleep(0)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, BOUND)
    assert all(h.done() for h in helpers)


async def test_told_to_ignore_errors_it_waits_for_every_task_whatever_the_others_ended_with() -> None:
    async def failing() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            raise ValueError("told already by its owner")

    broken = asyncio.create_task(failing())
    slow = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(broken, slow, ignore_errors=True), BOUND)
    assert slow.cancelled() and isinstance(broken.exception(), ValueError)
