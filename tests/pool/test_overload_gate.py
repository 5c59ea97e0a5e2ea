"""The 529 gate of one worker: who goes first after a back-off, and who waits; then the gates of
several workers meeting in one breaker store."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from claude_pool.breaker import BreakerEffect, BreakerStore, EmbeddedBreakerStore, RedisBreakerStore
from claude_pool.core.errors import Overloaded
from claude_pool.pool._overload_gate import OverloadGate
from claude_pool.pool._shared_overload import SharedOverload
from claude_pool.pool.classify import SUCCESS, ErrorPolicy, Outcome, OutcomeKind, Retry

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


async def test_a_request_on_its_last_attempt_lets_a_later_waiter_carry_the_probe() -> None:
    """After a back-off the longest waiter goes first, unless this attempt is its last and another
    waiter's is not: a probe's 529 would fail the one request and cost the other one of its tries.
    When every waiter is on its last attempt, the longest waiter still goes first."""
    gate = OverloadGate()
    order: list[str] = []

    async def close_the_gate() -> None:
        async with gate.turn(no_deadline) as turn:
            turn.outcome = OVERLOADED

    async def request(name: str, last_try: bool) -> None:
        async with gate.turn(no_deadline, last_try=last_try) as turn:
            order.append(name)
            turn.outcome = SUCCESS
            await asyncio.sleep(0.01)  # the call

    async def in_order(*requests: tuple[str, bool]) -> None:
        tasks = []
        for name, last_try in requests:
            tasks.append(asyncio.create_task(request(name, last_try)))
            await asyncio.sleep(0)  # each waits at the gate before the next comes
        await asyncio.gather(*tasks)

    await close_the_gate()
    await in_order(("on its last try", True), ("with tries left", False))
    assert order == ["with tries left", "on its last try"]  # the probe's success opened the gate

    order.clear()
    await close_the_gate()
    await in_order(("first, last try", True), ("second, last try", True))
    assert order == ["first, last try", "second, last try"]


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


async def test_a_waiter_whose_caller_gives_up_as_its_turn_comes_does_not_probe_but_hands_it_on() -> None:
    """The first turn after a back-off comes in the same moment as the waiter's cancellation (its
    client went away): it ends cancelled, sends nothing, and the next waiter probes instead. (On
    Python 3.11 ``asyncio.wait_for`` swallowed that cancellation and the request went on.)"""
    gate = OverloadGate()
    async with gate.turn(no_deadline) as turn:
        turn.outcome = OVERLOADED
    went: list[str] = []

    async def waiter(name: str) -> None:
        async with gate.turn(lambda: 30.0) as turn:  # a deadline: the wait is bounded by it
            went.append(name)
            turn.outcome = SUCCESS

    first = asyncio.create_task(waiter("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter("second"))
    await asyncio.sleep(0)
    (first_place, _) = gate._waiters  # to act in the moment its turn is handed to it
    first_place.add_done_callback(lambda _: first.cancel())
    await asyncio.wait_for(second, 1)
    assert first.cancelled()
    assert went == ["second"]


async def test_a_request_given_its_turn_before_the_gate_closed_goes_back_to_it_unsent() -> None:
    """A request let through while the gate was open (still waiting for its capacity) does not
    send once another call's 529 has closed the gate; the probe after the back-off does."""
    gate = OverloadGate()
    async with gate.turn(no_deadline) as queued_for_capacity:
        async with gate.turn(no_deadline) as other:
            other.outcome = OVERLOADED
        assert not gate.lets_through(queued_for_capacity)
    started = time.monotonic()
    async with gate.turn(no_deadline) as probe:
        assert gate.lets_through(probe)
        probe.outcome = SUCCESS
    assert time.monotonic() - started >= 0.04  # it waited out the 0.05 s back-off


async def test_a_gate_told_of_another_workers_529_closes_until_that_back_off_ends() -> None:
    gate = OverloadGate()
    async with gate.turn(no_deadline) as admitted:
        gate.closed_elsewhere(0.1)
        assert not gate.lets_through(admitted)
    started = time.monotonic()
    async with gate.turn(no_deadline) as probe:
        probe.outcome = SUCCESS
    assert time.monotonic() - started >= 0.09
    async with gate.turn(no_deadline) as after:  # the probe's answer opened it
        assert gate.lets_through(after)


# --- the gates of several workers, meeting in one breaker store ---------------------------------


@pytest.fixture(params=["embedded", "redis"])
async def make_shared(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], SharedOverload]]:
    """Each call: one worker's view of the shared overload (its own store connection), with a
    0.1 s first back-off doubling to 0.4 s; all on one backend."""
    stores: list[BreakerStore] = []
    policy = ErrorPolicy(overload_backoff_seconds=0.1)

    def make() -> SharedOverload:
        if request.param == "redis":
            url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
            store: BreakerStore = RedisBreakerStore.from_url(url, prefix=prefix)
        else:
            store = EmbeddedBreakerStore(tmp_path / "breakers.db")
        stores.append(store)
        return SharedOverload(store, policy, max_attempts=3)

    yield make
    for store in stores:
        await store.aclose()


@dataclass
class Upstream:
    """Answers 529 until ``overloaded_for`` seconds after it was made, then succeeds; notes every
    call as (start, end, worker, outcome)."""

    overloaded_for: float
    calls: list[tuple[float, float, str, Outcome]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.until = time.monotonic() + self.overloaded_for

    async def call(self, worker: str) -> Outcome:
        start = time.monotonic()
        await asyncio.sleep(0.02)
        outcome = replace(OVERLOADED, backoff_seconds=0.1) if start < self.until else SUCCESS
        self.calls.append((start, time.monotonic(), worker, outcome))
        return outcome


async def _served(gate: OverloadGate, worker: str, upstream: Upstream) -> None:
    while True:
        async with gate.turn(no_deadline) as turn:
            turn.outcome = await upstream.call(worker)
        if turn.outcome is SUCCESS:
            return


async def test_the_gates_of_two_workers_send_one_probe_at_a_time_and_its_answer_opens_both(
    make_shared: Callable[[], SharedOverload],
) -> None:
    """Two workers with three requests each meet a 0.6 s overload together. After that first wave,
    one probe at a time is out for both (never two at once), at the shared back-off (0.1 s, then
    0.2, then 0.4: three 529s at most), and the answer of one worker's probe opens the other's gate
    too. On their own, each gate would probe every 0.1 s: about twelve 529s, two at a time."""
    upstream = Upstream(overloaded_for=0.6)
    gates = {"a": OverloadGate(shared=make_shared()), "b": OverloadGate(shared=make_shared())}
    await asyncio.wait_for(
        asyncio.gather(*(_served(gate, name, upstream) for name, gate in gates.items() for _ in range(3))), 10
    )
    first_wave, after = upstream.calls[:6], upstream.calls[6:]
    assert all(outcome.kind is OutcomeKind.OVERLOADED for *_, outcome in first_wave)
    up_to_success = after[: next(i for i, call in enumerate(after) if call[3] is SUCCESS) + 1]
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(up_to_success)), up_to_success
    assert len(up_to_success) - 1 <= 3, [(c[2], c[3].kind) for c in up_to_success]
    assert len(upstream.calls) == 6 + len(up_to_success) + 5  # then the other five, once each


async def test_a_gate_whose_store_does_not_answer_backs_off_alone() -> None:
    store = RedisBreakerStore.from_url("redis://127.0.0.1:1/0", prefix="nowhere")
    gate = OverloadGate(shared=SharedOverload(store, ErrorPolicy(overload_backoff_seconds=0.1), max_attempts=3))
    upstream = Upstream(overloaded_for=0.3)
    try:
        await asyncio.wait_for(asyncio.gather(*(_served(gate, "a", upstream) for _ in range(3))), 10)
    finally:
        await store.aclose()
    assert upstream.calls[-1][3] is SUCCESS and len(upstream.calls) <= 3 + 4 + 3
