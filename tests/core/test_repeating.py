"""``repeating``: the step runs every interval while the block runs, and never after it.

The waits here are on events the step sets, each bounded by ``asyncio.wait_for``; the interval is
short so that a test takes milliseconds, and nothing sleeps to let the background task "catch up".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from claude_pool.core.repeating import repeating

INTERVAL = 0.02
BOUND = 5.0  # seconds any awaited condition may take before the test fails


def _background(name: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()]


class CountingStep:
    """A step that records when it ran; ``reached`` is set once it has run ``until`` times."""

    def __init__(self, until: int, *, answer: Callable[[int], bool] = lambda _: True) -> None:
        self.until = until
        self.answer = answer
        self.times: list[float] = []
        self.reached = asyncio.Event()

    async def __call__(self) -> bool:
        self.times.append(asyncio.get_running_loop().time())
        if len(self.times) >= self.until:
            self.reached.set()
        return self.answer(len(self.times))


async def test_the_step_runs_every_interval_while_the_block_runs() -> None:
    step = CountingStep(until=3)
    entered = asyncio.get_running_loop().time()
    async with repeating(INTERVAL, step, name="beat-every-interval"):
        await asyncio.wait_for(step.reached.wait(), BOUND)
    assert len(step.times) >= 3
    # the first beat comes one interval after entering, and each one an interval after the last
    gaps = [b - a for a, b in zip([entered, *step.times], step.times, strict=False)]
    assert all(gap >= INTERVAL * 0.9 for gap in gaps), gaps


async def test_a_block_shorter_than_the_interval_never_runs_the_step() -> None:
    step = CountingStep(until=1)
    async with repeating(60.0, step, name="beat-never"):
        assert _background("beat-never")  # it is scheduled...
    assert step.times == []  # ...but the block ended first
    assert _background("beat-never") == []


async def test_the_step_stops_when_the_block_ends() -> None:
    step = CountingStep(until=2)
    async with repeating(INTERVAL, step, name="beat-stops"):
        await asyncio.wait_for(step.reached.wait(), BOUND)
    # the background task is gone, not merely idle: nothing can run the step again
    assert _background("beat-stops") == []


async def test_a_step_in_progress_is_cancelled_when_the_block_ends_with_an_error() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow_step() -> bool:
        started.set()
        try:
            await asyncio.Event().wait()  # a step that would never finish on its own
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return True

    with pytest.raises(LookupError, match="the block's own error"):
        async with repeating(INTERVAL, slow_step, name="beat-cancelled"):
            await asyncio.wait_for(started.wait(), BOUND)
            raise LookupError("the block's own error")
    # the block's error is what the caller sees, and the step did not outlive the block
    assert cancelled.is_set()
    assert _background("beat-cancelled") == []


async def test_a_step_that_answers_false_ends_the_repetition_but_not_the_block() -> None:
    step = CountingStep(until=2, answer=lambda count: count < 2)
    after_stop: list[str] = []
    async with repeating(INTERVAL, step, name="beat-until-false"):
        (task,) = _background("beat-until-false")
        await asyncio.wait_for(task, BOUND)  # the repetition ends by itself...
        after_stop.append("the block went on")  # ...and the block is still running
    assert len(step.times) == 2
    assert after_stop == ["the block went on"]


async def test_an_error_in_the_step_is_not_swallowed() -> None:
    """The module leaves errors to the step; one that escapes stops the repetition and is raised
    when the block ends, rather than disappearing with the background task."""

    async def failing_step() -> bool:
        raise ConnectionError("the lease could not be renewed")

    with pytest.raises(ConnectionError, match="could not be renewed"):
        async with repeating(INTERVAL, failing_step, name="beat-fails"):
            (task,) = _background("beat-fails")
            await asyncio.wait([task], timeout=BOUND)
            assert task.done()



async def _ended_in_time(block: asyncio.Task[object]) -> bool:
    done, _ = await asyncio.wait({block}, timeout=BOUND)
    return bool(done)


async def test_the_block_ends_even_when_a_step_in_progress_swallows_its_cancellation() -> None:
    """On Python 3.11 ``asyncio.wait_for`` (redis-py sends every command through it) returns instead
    of raising when its task is cancelled in the same turn as what it waits for completes: the
    lease renewal then missed the block's end, renewed again and again, and its call never
    returned (a delegation that hung until the test's time-out)."""
    started = asyncio.Event()
    reply: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def renewal_whose_reply_comes_as_the_block_ends() -> bool:
        started.set()
        await asyncio.wait_for(reply, BOUND)  # done by the time the block's end cancels the step
        return True

    async def block() -> None:
        async with repeating(INTERVAL, renewal_whose_reply_comes_as_the_block_ends, name="beat-swallowed"):
            await started.wait()
            reply.set_result(None)

    assert await _ended_in_time(asyncio.create_task(block()))
    assert _background("beat-swallowed") == []


async def test_the_block_ends_even_when_a_step_catches_the_cancellation_and_returns() -> None:
    started = asyncio.Event()

    async def stubborn_step() -> bool:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return True  # as if it had not been told to stop
        return True

    async def block() -> None:
        async with repeating(INTERVAL, stubborn_step, name="beat-stubborn"):
            await started.wait()

    assert await _ended_in_time(asyncio.create_task(block()))
    assert _background("beat-stubborn") == []


async def test_a_cancellation_of_the_block_while_it_ends_is_not_swallowed() -> None:
    """The block's owner cancelled while the step winds down (a renewal giving its lease back) is
    cancelled, not carried on past the block as if nothing had been asked of it."""
    started, winding_down = asyncio.Event(), asyncio.Event()
    went_on: list[str] = []

    async def step_that_winds_down() -> bool:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            winding_down.set()
            await asyncio.sleep(INTERVAL * 5)
            raise
        return True

    async def block() -> None:
        async with repeating(INTERVAL, step_that_winds_down, name="beat-winding-down"):
            await started.wait()
        went_on.append("past the block")

    owner = asyncio.create_task(block())
    await asyncio.wait_for(winding_down.wait(), BOUND)
    owner.cancel()
    assert await _ended_in_time(owner)
    assert owner.cancelled()
    assert went_on == []
