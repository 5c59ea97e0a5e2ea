"""The breaker's state machine, one class per state, as pure functions of a stored record.

The embedded store runs these inside one SQLite transaction. The Redis store cannot call Python
inside its atomic step, so ``lua/*.lua`` carry the same rules line for line; the shared
store test suite holds the two to the same behaviour. Change both or neither.

    closed --failure_threshold consecutive failures--> open
    open --timeout elapsed (read from opened_at, no timer)--> half_open (stored when a probe starts)
    half_open --probe success--> closed (trips reset)
    half_open --probe failure--> open (timeout * backoff_multiplier ** trips, capped)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar

from claude_pool.breaker.model import BreakerEffect, BreakerParams, BreakerRecord, State, StoreResult, Verdict

__all__ = [
    "NO_PROBES",
    "BreakerState",
    "ClosedState",
    "HalfOpenState",
    "OpenState",
    "ProbeSlots",
    "admit",
    "apply_result",
    "force_open",
    "reset",
    "state_for",
]


def _same(verdict: Verdict, rec: BreakerRecord, now: float, *, until: float | None = None) -> StoreResult:
    return StoreResult(verdict, rec.state, rec, now, until)


@dataclass(frozen=True)
class ProbeSlots:
    """The half-open probe slots held now (unexpired ones only), as admission sees them."""

    in_flight: int = 0
    earliest_expiry: float | None = None  # when the first of them frees up


NO_PROBES = ProbeSlots()


def _opened(rec: BreakerRecord, *, trips: int, timeout: float, now: float) -> BreakerRecord:
    """``rec`` opened at ``now`` for ``timeout`` seconds, as its ``trips``-th consecutive opening."""
    return replace(
        rec, state=State.OPEN, opened_at=now, open_timeout=timeout, trips=trips, epoch=rec.epoch + 1
    )


class BreakerState(ABC):
    name: ClassVar[State]

    @abstractmethod
    def admit(
        self, rec: BreakerRecord, *, now: float, slots: ProbeSlots, params: BreakerParams
    ) -> StoreResult:
        """May a call go through? ``slots`` counts unexpired probe slots only."""

    def on_result(
        self, rec: BreakerRecord, effect: BreakerEffect, *, now: float, params: BreakerParams
    ) -> StoreResult:
        """The result of an ordinary (non-probe) call. Only the closed state listens to them: in
        the others they come from calls let through before the opening, and say nothing new."""
        return _same(Verdict.IGNORED, rec, now)

    def on_probe_result(
        self, rec: BreakerRecord, effect: BreakerEffect, *, now: float, params: BreakerParams
    ) -> StoreResult:
        """The verdict of a probe whose slot was still held."""
        return _same(Verdict.IGNORED, rec, now)


class ClosedState(BreakerState):
    name = State.CLOSED

    def admit(
        self, rec: BreakerRecord, *, now: float, slots: ProbeSlots, params: BreakerParams
    ) -> StoreResult:
        return _same(Verdict.ALLOW, rec, now)

    def on_result(
        self, rec: BreakerRecord, effect: BreakerEffect, *, now: float, params: BreakerParams
    ) -> StoreResult:
        if effect is BreakerEffect.SUCCESS:
            return StoreResult(Verdict.COUNTED, rec.state, replace(rec, failures=0), now)
        failures = rec.failures + 1
        if failures < params.failure_threshold:
            return StoreResult(Verdict.COUNTED, rec.state, replace(rec, failures=failures), now)
        after = _opened(replace(rec, failures=failures), trips=1, timeout=params.open_timeout(1), now=now)
        return StoreResult(Verdict.COUNTED, rec.state, after, now, reason=f"{failures} consecutive failures")


class HalfOpenState(BreakerState):
    name = State.HALF_OPEN

    def admit(
        self, rec: BreakerRecord, *, now: float, slots: ProbeSlots, params: BreakerParams
    ) -> StoreResult:
        if slots.in_flight >= params.half_open_max_calls:
            reason = "half-open: probe slots taken"
            return StoreResult(Verdict.DENY, rec.state, rec, now, until=slots.earliest_expiry, reason=reason)
        if rec.state is State.HALF_OPEN:
            return _same(Verdict.PROBE, rec, now)
        # The first probe after the timeout is where half-open starts, once, for every worker.
        after = replace(rec, state=State.HALF_OPEN, epoch=rec.epoch + 1)
        return StoreResult(Verdict.PROBE, rec.state, after, now, reason="open timeout elapsed")

    def on_probe_result(
        self, rec: BreakerRecord, effect: BreakerEffect, *, now: float, params: BreakerParams
    ) -> StoreResult:
        if effect is BreakerEffect.SUCCESS:
            after = BreakerRecord(epoch=rec.epoch + 1)
            return StoreResult(Verdict.COUNTED, rec.state, after, now, reason="probe succeeded")
        trips = rec.trips + 1
        failed = replace(rec, failures=rec.failures + 1)
        after = _opened(failed, trips=trips, timeout=params.open_timeout(trips), now=now)
        return StoreResult(Verdict.COUNTED, rec.state, after, now, reason="probe failed")


class OpenState(BreakerState):
    name = State.OPEN

    def admit(
        self, rec: BreakerRecord, *, now: float, slots: ProbeSlots, params: BreakerParams
    ) -> StoreResult:
        until = rec.open_until
        if until is not None and now < until:
            return StoreResult(Verdict.DENY, rec.state, rec, now, until=until, reason="circuit open")
        return HALF_OPEN.admit(rec, now=now, slots=slots, params=params)


CLOSED = ClosedState()
OPEN = OpenState()
HALF_OPEN = HalfOpenState()
_BY_NAME: dict[State, BreakerState] = {CLOSED.name: CLOSED, OPEN.name: OPEN, HALF_OPEN.name: HALF_OPEN}


def state_for(rec: BreakerRecord) -> BreakerState:
    """The state object of the *stored* state (open past its timeout still acts as open, which
    hands admission to half-open)."""
    return _BY_NAME[rec.state]


def admit(rec: BreakerRecord, *, now: float, slots: ProbeSlots, params: BreakerParams) -> StoreResult:
    """Verdict ``probe`` means the caller must record a probe slot in the same transaction."""
    return state_for(rec).admit(rec, now=now, slots=slots, params=params)


def apply_result(
    rec: BreakerRecord,
    effect: BreakerEffect,
    *,
    probe: bool,
    probe_held: bool,
    epoch: int | None,
    now: float,
    params: BreakerParams,
) -> StoreResult:
    """A call's result. For a probe, ``probe_held`` says whether its slot was still there (and has
    just been removed by the caller); an expired probe's late verdict is ignored."""
    if probe:
        if not probe_held:
            return _same(Verdict.IGNORED, rec, now)
        if effect is BreakerEffect.NOT_COUNTED:
            return _same(Verdict.RELEASED, rec, now)
        return state_for(rec).on_probe_result(rec, effect, now=now, params=params)
    if effect is BreakerEffect.NOT_COUNTED or (epoch is not None and epoch != rec.epoch):
        return _same(Verdict.IGNORED, rec, now)
    return state_for(rec).on_result(rec, effect, now=now, params=params)


def reset(rec: BreakerRecord, *, now: float, reason: str) -> StoreResult:
    return StoreResult(Verdict.RESET, rec.state, BreakerRecord(epoch=rec.epoch + 1), now, reason=reason)


def force_open(
    rec: BreakerRecord, *, now: float, reason: str, seconds: float | None, params: BreakerParams
) -> StoreResult:
    trips = max(rec.trips, 1)
    timeout = params.open_timeout(trips) if seconds is None else seconds
    after = _opened(rec, trips=trips, timeout=timeout, now=now)
    return StoreResult(Verdict.FORCED, rec.state, after, now, reason=reason)
