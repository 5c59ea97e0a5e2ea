"""The 529 gate of one worker, on its own: who goes first after a back-off, and who waits."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from claude_pool.breaker import BreakerEffect
from claude_pool.core.errors import Overloaded
from claude_pool.pool._overload_gate import OverloadGate
from claude_pool.pool.classify import SUCCESS, Outcome, OutcomeKind, Retry

OVERLOADED = Outcome(
    kind=OutcomeKind.OVERLOADED, breaker=BreakerEffect.NOT_COUNTED, retry=Retry.ANY_ACCOUNT_AFTER_BACKOFF,
    backoff_seconds=0.05,
)


def no_deadline() -> None:
    return None


async def _attempt(gate: OverloadGate, name: str, outcomes: dict[str, list[Outcome]], order: list[str]) -> None:
    """One request: tries until an attempt succeeds, noting each try in ``order``."""
    while True:
        async with gate.turn(no_deadline) as turn:
            order.append(name)
            turn.outcome = outcomes[name].pop(0)
            await asyncio.sleep(0.01)  # the call
        if turn.outcome is SUCCESS:
            return


async def test_after_a_back_off_the_longest_waiter_goes_first_not_the_last_probe() -> None:
    """A, B and C meet a 529 together. A probes first and meets another; then B goes, not A again:
    a request whose probe failed waits behind the others rather than spend every attempt probing."""
    gate = OverloadGate()
    outcomes = {"a": [OVERLOADED, OVERLOADED, SUCCESS], "b": [OVERLOADED, OVERLOADED, SUCCESS],
                "c": [OVERLOADED, SUCCESS]}
    order: list[str] = []
    await asyncio.gather(*(_attempt(gate, name, outcomes, order) for name in "abc"))
    # the first wave went through the open gate; then one probe at a time, in the order they waited
    assert order[:3] == ["a", "b", "c"]
    assert order[3:5] == ["a", "b"]  # a's probe: 529; then b's, not a's: 529
    assert set(order[5:]) == {"a", "b", "c"} and order[5] == "c"  # c's succeeds and opens the gate


async def test_a_request_whose_deadline_comes_before_the_gate_opens_is_refused_at_once() -> None:
    gate = OverloadGate()
    async with gate.turn(no_deadline) as turn:
        turn.outcome = replace(OVERLOADED, backoff_seconds=5.0)
    with pytest.raises(Overloaded) as info:
        async with gate.turn(lambda: 1.0):
            pass
    assert info.value.retry_after is not None and info.value.retry_after > 4


async def test_a_probe_cancelled_mid_call_hands_the_first_turn_to_the_next_waiter() -> None:
    gate = OverloadGate()
    async with gate.turn(no_deadline) as turn:
        turn.outcome = OVERLOADED
    calling = asyncio.Event()

    async def cancelled_probe() -> None:
        async with gate.turn(no_deadline):
            calling.set()
            await asyncio.sleep(30)  # its caller gives up mid-call: no outcome

    async def next_waiter() -> str:
        async with gate.turn(no_deadline) as turn:
            turn.outcome = SUCCESS
            return "went"

    probe = asyncio.create_task(cancelled_probe())
    await calling.wait()
    waiter = asyncio.create_task(next_waiter())
    await asyncio.sleep(0.01)
    assert not waiter.done()  # one at a time while the probe is out
    probe.cancel()
    assert await asyncio.wait_for(waiter, 1) == "went"
