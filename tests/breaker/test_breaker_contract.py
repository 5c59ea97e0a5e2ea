"""The breaker's behaviour, identical on every store (each test runs on Redis and on SQLite).

Time is the fake clock of conftest.py, moved by the tests (never slept through); "workers" are
separate store instances, each with its own connection to the shared backend and the same clock.
"""

from __future__ import annotations

import asyncio

import pytest

from claude_pool.breaker import (
    BreakerListener,
    CircuitBreaker,
    Denied,
    Permit,
    State,
    Transition,
)
from claude_pool.core.config import BreakerConfig
from claude_pool.pool.classify import SUCCESS, BreakerEffect, Outcome
from tests.capacity.conftest import FakeClock

from .conftest import StoreFactory

TIMEOUT = 60.0
ACCOUNT = "acct-a"
CONFIG = BreakerConfig(
    failure_threshold=5, timeout_seconds=TIMEOUT, half_open_max_calls=1, backoff_multiplier=2.0,
    max_timeout_seconds=150.0,
)


class Recorder(BreakerListener):
    def __init__(self) -> None:
        self.transitions: list[Transition] = []
        self.denied: list[Denied] = []

    async def on_transition(self, transition: Transition) -> None:
        self.transitions.append(transition)

    async def on_denied(self, denied: Denied) -> None:
        self.denied.append(denied)

    def moves(self) -> list[tuple[State, State]]:
        return [(t.from_state, t.to_state) for t in self.transitions]


def breaker(
    make_store: StoreFactory, config: BreakerConfig = CONFIG, *, listener: BreakerListener | None = None,
    probe_ttl: float = 30.0,
) -> CircuitBreaker:
    return CircuitBreaker(make_store(), config, listeners=[listener] if listener else [],
                          probe_ttl_seconds=probe_ttl)


async def fail(cb: CircuitBreaker, times: int, account_id: str = ACCOUNT) -> list[Transition | None]:
    results = []
    for _ in range(times):
        permit = await cb.allow(account_id)
        assert isinstance(permit, Permit)
        results.append(await cb.record(account_id, BreakerEffect.FAILURE, permit=permit))
    return results


async def open_and_wait(cb: CircuitBreaker, clock: FakeClock) -> None:
    await fail(cb, CONFIG.failure_threshold)
    clock.advance(TIMEOUT)


async def test_unknown_accounts_read_closed(make_store: StoreFactory) -> None:
    cb = breaker(make_store)
    views = await cb.states(["x", "y"])
    assert set(views) == {"x", "y"}
    assert all(v.state is State.CLOSED and v.consecutive_failures == 0 and v.trips == 0 for v in views.values())
    assert await cb.states([]) == {}
    permit = await cb.allow("x")
    assert isinstance(permit, Permit) and permit and not permit.probe


async def test_opens_after_threshold_consecutive_failures(make_store: StoreFactory) -> None:
    rec = Recorder()
    cb = breaker(make_store, listener=rec)
    assert await fail(cb, 4) == [None] * 4
    assert (await cb.state(ACCOUNT)).consecutive_failures == 4
    [transition] = await fail(cb, 1)
    assert transition is not None
    assert (transition.from_state, transition.to_state) == (State.CLOSED, State.OPEN)
    assert transition.consecutive_failures == 5 and transition.trips == 1
    assert transition.open_until == pytest.approx(transition.at + TIMEOUT)
    assert "5 consecutive failures" in transition.reason
    assert rec.moves() == [(State.CLOSED, State.OPEN)]

    view = await cb.state(ACCOUNT)
    assert view.state is State.OPEN and not view.available
    assert view.open_until == pytest.approx(transition.open_until)
    denied = await cb.allow(ACCOUNT)
    assert isinstance(denied, Denied) and not denied
    assert denied.state is State.OPEN and denied.until == pytest.approx(transition.open_until)
    assert rec.denied == [denied]


@pytest.mark.parametrize(
    ("effect", "failures_after", "then_failing", "state_after"),
    [
        # a success resets the count (an Outcome is accepted as well as a BreakerEffect)
        pytest.param(SUCCESS, 0, 4, State.CLOSED, id="a-success-resets-the-count"),
        pytest.param(BreakerEffect.NOT_COUNTED, 4, 1, State.OPEN, id="not-counted-changes-nothing"),
    ],
)
async def test_what_a_call_of_a_closed_circuit_records(
    make_store: StoreFactory,
    effect: BreakerEffect | Outcome,
    failures_after: int,
    then_failing: int,
    state_after: State,
) -> None:
    cb = breaker(make_store)
    await fail(cb, 4)
    permit = await cb.allow(ACCOUNT)
    assert isinstance(permit, Permit)
    assert await cb.record(ACCOUNT, effect, permit=permit) is None
    assert (await cb.state(ACCOUNT)).consecutive_failures == failures_after
    await fail(cb, then_failing)
    assert (await cb.state(ACCOUNT)).state is state_after


async def test_open_denies_until_the_timeout_then_lets_one_probe(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    rec = Recorder()
    cb = breaker(make_store, listener=rec)
    await fail(cb, 5)
    opened_until = rec.transitions[-1].open_until
    assert opened_until == clock.now + TIMEOUT
    clock.advance(TIMEOUT - 0.5)  # binary fractions: the sums stay exact
    denied = await cb.allow(ACCOUNT)
    assert isinstance(denied, Denied) and denied.until == pytest.approx(opened_until)
    assert (await cb.state(ACCOUNT)).state is State.OPEN
    clock.advance(0.5)
    assert (await cb.state(ACCOUNT)).state is State.HALF_OPEN  # derived from the clock, no timer
    assert rec.moves() == [(State.CLOSED, State.OPEN)]

    probe = await cb.allow(ACCOUNT)
    assert isinstance(probe, Permit) and probe.probe and probe.token
    assert rec.moves()[-1] == (State.OPEN, State.HALF_OPEN)
    second = await cb.allow(ACCOUNT)
    assert isinstance(second, Denied) and second.state is State.HALF_OPEN
    # At the latest when the probe slot expires (30 s here).
    assert second.until == pytest.approx(clock.now + 30.0)
    assert (await cb.state(ACCOUNT)).probes_in_flight == 1


async def test_half_open_admits_exactly_the_allowed_probes_among_many_workers(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    workers = [breaker(make_store) for _ in range(5)]
    await open_and_wait(workers[0], clock)
    permits = await asyncio.gather(*(workers[i % 5].allow(ACCOUNT) for i in range(50)))
    probes = [p for p in permits if isinstance(p, Permit)]
    assert len(probes) == 1 and probes[0].probe
    assert sum(isinstance(p, Denied) for p in permits) == 49


async def test_half_open_max_calls_above_one(make_store: StoreFactory, clock: FakeClock) -> None:
    config = CONFIG.model_copy(update={"half_open_max_calls": 3})
    workers = [breaker(make_store, config) for _ in range(4)]
    await open_and_wait(workers[0], clock)
    permits = await asyncio.gather(*(workers[i % 4].allow(ACCOUNT) for i in range(40)))
    assert sum(isinstance(p, Permit) and p.probe for p in permits) == 3


async def test_probe_success_closes_and_forgets_the_trips(make_store: StoreFactory, clock: FakeClock) -> None:
    rec = Recorder()
    cb = breaker(make_store, listener=rec)
    await open_and_wait(cb, clock)
    probe = await cb.allow(ACCOUNT)
    assert isinstance(probe, Permit) and probe.probe
    transition = await cb.record(ACCOUNT, BreakerEffect.SUCCESS, permit=probe)
    assert transition is not None and (transition.from_state, transition.to_state) == (State.HALF_OPEN, State.CLOSED)
    assert transition.open_until is None and transition.reason == "probe succeeded"
    assert rec.moves() == [(State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN), (State.HALF_OPEN, State.CLOSED)]
    view = await cb.state(ACCOUNT)
    assert (view.state, view.consecutive_failures, view.trips, view.probes_in_flight) == (State.CLOSED, 0, 0, 0)
    assert view.opened_at is None and view.open_until is None
    after = await cb.allow(ACCOUNT)
    assert isinstance(after, Permit) and not after.probe


async def test_probe_failure_reopens_with_backed_off_capped_timeout(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    rec = Recorder()
    cb = breaker(make_store, listener=rec)
    [first] = (await fail(cb, 5))[-1:]
    assert first is not None and first.open_until is not None
    timeouts = [first.open_until - first.at]
    for expected_trips in (2, 3, 4):
        clock.advance(timeouts[-1])
        probe = await cb.allow(ACCOUNT)
        assert isinstance(probe, Permit) and probe.probe
        reopened = await cb.record(ACCOUNT, BreakerEffect.FAILURE, permit=probe)
        assert reopened is not None and reopened.to_state is State.OPEN and reopened.reason == "probe failed"
        assert reopened.trips == expected_trips and reopened.open_until is not None
        timeouts.append(reopened.open_until - reopened.at)
        assert isinstance(await cb.allow(ACCOUNT), Denied)
    assert timeouts == pytest.approx([60.0, 120.0, 150.0, 150.0])
    # Closing forgets the trips: the next opening starts from the base timeout again.
    clock.advance(150.0)
    probe = await cb.allow(ACCOUNT)
    assert isinstance(probe, Permit)
    await cb.record(ACCOUNT, BreakerEffect.SUCCESS, permit=probe)
    [again] = (await fail(cb, 5))[-1:]
    assert again is not None and again.trips == 1
    assert again.open_until is not None and again.open_until - again.at == pytest.approx(TIMEOUT)


async def test_not_counted_probe_gives_its_slot_back_without_a_verdict(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    rec = Recorder()
    cb = breaker(make_store, listener=rec)
    await open_and_wait(cb, clock)
    probe = await cb.allow(ACCOUNT)
    assert isinstance(probe, Permit) and probe.probe
    assert isinstance(await cb.allow(ACCOUNT), Denied)
    assert await cb.record(ACCOUNT, BreakerEffect.NOT_COUNTED, permit=probe) is None
    view = await cb.state(ACCOUNT)
    assert (view.state, view.probes_in_flight, view.trips) == (State.HALF_OPEN, 0, 1)
    next_probe = await cb.allow(ACCOUNT)
    assert isinstance(next_probe, Permit) and next_probe.probe
    assert rec.moves() == [(State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN)]


async def test_each_transition_is_heard_once_under_concurrent_failures(make_store: StoreFactory) -> None:
    recorders = [Recorder() for _ in range(4)]
    workers = [breaker(make_store, listener=r) for r in recorders]
    permits = [await workers[i % 4].allow(ACCOUNT) for i in range(20)]
    assert all(isinstance(p, Permit) for p in permits)
    await asyncio.gather(
        *(workers[i % 4].record(ACCOUNT, BreakerEffect.FAILURE, permit=p) for i, p in enumerate(permits))  # type: ignore[arg-type]
    )
    moves = [m for r in recorders for m in r.moves()]
    assert moves == [(State.CLOSED, State.OPEN)]
    assert (await workers[0].state(ACCOUNT)).state is State.OPEN


async def test_an_expired_probe_slot_is_reclaimed(make_store: StoreFactory, clock: FakeClock) -> None:
    rec = Recorder()
    cb = breaker(make_store, listener=rec, probe_ttl=30.0)
    await open_and_wait(cb, clock)
    lost = await cb.allow(ACCOUNT)  # its worker "dies": never recorded
    assert isinstance(lost, Permit) and lost.probe
    clock.advance(29.5)
    assert isinstance(await cb.allow(ACCOUNT), Denied)
    assert (await cb.state(ACCOUNT)).probes_in_flight == 1
    clock.advance(0.5)
    assert (await cb.state(ACCOUNT)).probes_in_flight == 0
    fresh = await cb.allow(ACCOUNT)
    assert isinstance(fresh, Permit) and fresh.probe
    # The dead probe's late verdict no longer counts; the live one's does.
    assert await cb.record(ACCOUNT, BreakerEffect.SUCCESS, permit=lost) is None
    assert (await cb.state(ACCOUNT)).state is State.HALF_OPEN
    done = await cb.record(ACCOUNT, BreakerEffect.SUCCESS, permit=fresh)
    assert done is not None and done.to_state is State.CLOSED


async def test_results_of_calls_let_through_before_an_opening_are_stale(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    cb = breaker(make_store)
    early = await cb.allow(ACCOUNT)
    assert isinstance(early, Permit)
    await open_and_wait(cb, clock)
    probe = await cb.allow(ACCOUNT)
    assert isinstance(probe, Permit)
    await cb.record(ACCOUNT, BreakerEffect.SUCCESS, permit=probe)
    await cb.record(ACCOUNT, BreakerEffect.FAILURE, permit=early)
    assert (await cb.state(ACCOUNT)).consecutive_failures == 0


async def test_a_closed_view_is_a_permit_that_goes_stale_like_allows(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    """The pool takes a closed circuit's permit from the view it read (no second store round):
    it counts as allow's would, and a result from before a trip counts for nothing."""
    cb = breaker(make_store)
    await cb.reset(ACCOUNT)  # a later epoch than the first: the view must carry it
    await fail(cb, 4)
    permit = cb.closed_permit(await cb.state(ACCOUNT))
    assert permit is not None and not permit.probe
    assert await cb.record(ACCOUNT, BreakerEffect.SUCCESS, permit=permit) is None
    assert (await cb.state(ACCOUNT)).consecutive_failures == 0  # counted: the streak is broken
    early = cb.closed_permit(await cb.state(ACCOUNT))
    await open_and_wait(cb, clock)
    assert cb.closed_permit(await cb.state(ACCOUNT)) is None  # half-open: probes come from allow
    probe = await cb.allow(ACCOUNT)
    assert isinstance(probe, Permit) and probe.probe
    await cb.record(ACCOUNT, BreakerEffect.SUCCESS, permit=probe)
    await cb.record(ACCOUNT, BreakerEffect.FAILURE, permit=early)
    assert (await cb.state(ACCOUNT)).consecutive_failures == 0
    await fail(cb, CONFIG.failure_threshold)
    assert cb.closed_permit(await cb.state(ACCOUNT)) is None  # open


async def test_results_while_open_do_not_close_or_extend(make_store: StoreFactory) -> None:
    cb = breaker(make_store)
    permits = [await cb.allow(ACCOUNT) for _ in range(7)]
    for p in permits[:5]:
        await cb.record(ACCOUNT, BreakerEffect.FAILURE, permit=p)  # type: ignore[arg-type]
    before = await cb.state(ACCOUNT)
    assert await cb.record(ACCOUNT, BreakerEffect.SUCCESS, permit=permits[5]) is None  # type: ignore[arg-type]
    assert await cb.record(ACCOUNT, BreakerEffect.FAILURE, permit=permits[6]) is None  # type: ignore[arg-type]
    assert await cb.state(ACCOUNT) == before


async def test_accounts_are_independent_and_read_in_one_call(make_store: StoreFactory) -> None:
    cb = breaker(make_store)
    await fail(cb, 5, "a")
    await fail(cb, 2, "b")
    views = await cb.states(["a", "b", "c"])
    assert [views[k].state for k in "abc"] == [State.OPEN, State.CLOSED, State.CLOSED]
    assert views["b"].consecutive_failures == 2 and views["a"].trips == 1


async def test_reset_and_force_open(make_store: StoreFactory) -> None:
    rec = Recorder()
    cb = breaker(make_store, listener=rec)
    opened = await cb.force_open(ACCOUNT, "operator: key suspected leaked", seconds=60)
    assert opened is not None and opened.to_state is State.OPEN and opened.reason.startswith("operator")
    assert opened.open_until == pytest.approx(opened.at + 60)
    assert isinstance(await cb.allow(ACCOUNT), Denied)
    assert await cb.force_open(ACCOUNT, "again") is None  # already open: no second transition
    closed = await cb.reset(ACCOUNT)
    assert closed is not None and (closed.from_state, closed.to_state) == (State.OPEN, State.CLOSED)
    assert await cb.reset(ACCOUNT) is None
    view = await cb.state(ACCOUNT)
    assert (view.state, view.trips, view.consecutive_failures) == (State.CLOSED, 0, 0)
    assert rec.moves() == [(State.CLOSED, State.OPEN), (State.OPEN, State.CLOSED)]


async def test_a_failing_listener_does_not_break_the_breaker(
    make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(BreakerListener):
        async def on_transition(self, transition: Transition) -> None:
            raise RuntimeError("slack is down")

    rec = Recorder()
    cb = CircuitBreaker(make_store(), CONFIG, listeners=[Broken(), rec])
    await fail(cb, 5)
    assert rec.moves() == [(State.CLOSED, State.OPEN)]
    assert "slack is down" in caplog.text
