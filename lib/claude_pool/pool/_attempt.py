"""One call on one account, from its admission to its settlement.

:class:`Attempt` is the one owner of what an admitted call holds, its capacity reservation and its
breaker permit, and gives both back exactly once. The functions after it read how the call ended:
what it means (``outcome_of``), whether upstream may have charged it without answering
(``left_unanswered``), whether our caller's deadline cut it (``cut_by_deadline``), and its record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from claude_pool.breaker import CircuitBreaker, Permit
from claude_pool.capacity import CapacityStore, RateLimitSnapshot, Reservation, Usage
from claude_pool.core.errors import BackendUnavailable, UpstreamFailure
from claude_pool.core.logs import log_event
from claude_pool.core.repeating import repeating
from claude_pool.pool.classify import BreakerEffect, ErrorPolicy, Outcome, OutcomeKind, Retry
from claude_pool.pool.directory import PoolAccount
from claude_pool.pool.models import AttemptRecord
from claude_pool.pool.upstream import StreamBrokeAfterStart, UpstreamReply

__all__ = [
    "CUT_BY_DEADLINE",
    "Attempt",
    "AttemptEnd",
    "CallBudget",
    "attempt_record",
    "cut_by_deadline",
    "left_unanswered",
    "outcome_of",
    "usage_of",
]

logger = logging.getLogger("claude_pool.pool")

# How a call cut by our caller's deadline settles: the breaker does not count it, nothing retries it.
CUT_BY_DEADLINE = Outcome(kind=OutcomeKind.CANCELLED, breaker=BreakerEffect.NOT_COUNTED, retry=Retry.NO)


class Attempt:
    """Leave to make one call on ``account``: its capacity ``reservation`` and breaker ``permit``.

    Exactly one of :meth:`settle` (the call's outcome is known) or :meth:`release` (nothing is
    counted) gives them back. Used as ``async with``, a block that ends with neither (our caller's
    cancellation, a bug, a failure before the call went out) releases them on its way out.
    """

    __slots__ = ("_breaker", "_capacity", "_open", "account", "due", "permit", "reservation", "sending")

    def __init__(
        self,
        account: PoolAccount,
        reservation: Reservation,
        permit: Permit,
        *,
        capacity: CapacityStore,
        breaker: CircuitBreaker,
    ) -> None:
        self.account = account
        self.reservation = reservation
        self.permit = permit
        self._capacity = capacity
        self._breaker = breaker
        self._open = True  # neither settled nor released yet
        # When its place in the queue comes (``time.monotonic()``): now, unless it was queued.
        self.due = time.monotonic() + max(reservation.wait_seconds, 0.0)
        # Set just before the call goes out: until then (a queued reservation waiting for its send
        # time) nothing can have reached upstream, and a release gives everything back.
        self.sending = False

    async def __aenter__(self) -> Attempt:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._open:
            # Not the account's fault, nothing counted; once sending, the request stays charged, as
            # it may have reached upstream. Shielded: a second cancellation must not leave the slot held.
            await asyncio.shield(self.release(sent=self.sending))

    async def release(self, *, sent: bool) -> None:
        """Give the reservation and the permit back, counting nothing against the account
        (``sent``: the request may have reached upstream, so it stays charged; its tokens do not)."""
        self._open = False
        await _both(
            self._capacity.settle(self.reservation, None, request_sent=sent),
            self._breaker.record(self.account.id, BreakerEffect.NOT_COUNTED, permit=self.permit),
        )

    async def settle(
        self, outcome: Outcome, reply: UpstreamReply | None, *, keep_reserved: bool, calibrate: bool
    ) -> bool:
        """Settle the reservation with what the call used, correct the bucket from upstream's
        headers (``calibrate``), cool it down if the outcome says so and feed the breaker.

        ``keep_reserved``: the call's fate upstream is unknown; refund nothing of its reservation
        (an over-charge costs a little throughput once, an under-charge costs 429s). Once begun the
        attempt counts as settled: if a step fails, the lease's expiry returns what is left, never
        a release that would refund what upstream may have charged. True when upstream's headers
        calibrated the bucket."""
        self._open = False
        headers = reply.headers if reply is not None else (outcome.error.headers if outcome.error else {})
        usage = None
        if reply is not None:
            usage = usage_of(reply)
        elif keep_reserved:
            usage = Usage(self.reservation.demand.input_tokens, self.reservation.demand.output_tokens)
        snapshot = RateLimitSnapshot.from_headers(headers) if headers and calibrate else None

        async def settle_capacity() -> None:
            # A connection that never opened sent nothing; any other failure may have been counted upstream.
            await self._capacity.settle(self.reservation, usage, request_sent=True, snapshot=snapshot)
            if outcome.cooldown_until is not None:
                await self._capacity.cool_down(self.reservation.bucket_id, outcome.cooldown_until)

        await _both(settle_capacity(), self._breaker.record(self.account.id, outcome.breaker, permit=self.permit))
        return snapshot is not None

    def lease_kept(self, ttl: float) -> AbstractAsyncContextManager[None]:
        """Renew the call's lease every third of its period while the call runs: a long stream
        must not look like a dead worker's call, have its slot reclaimed and given to another."""
        account_id = self.account.id

        async def renew() -> bool:
            try:
                if await self._capacity.renew(self.reservation, ttl) is None:
                    log_event(logger, logging.WARNING, "lease lost during the call", account_id=account_id)
                    return False
            except BackendUnavailable as exc:  # the next renewal may get through
                warning = "lease renewal failed"
                log_event(logger, logging.WARNING, warning, account_id=account_id, error=str(exc))
            return True

        return repeating(ttl / 3, renew, name=f"lease-{self.reservation.reservation_id}")


async def _both(capacity_step: Awaitable[object], breaker_step: Awaitable[object]) -> None:
    """The two stores' steps of one settlement, at once: they touch different state, and the
    caller's answer waits for both (one round of the stores instead of two). Each runs to its end
    even when the other fails; then the first failure is raised."""
    outcomes = await asyncio.gather(capacity_step, breaker_step, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


@dataclass(frozen=True)
class AttemptEnd:
    """How one attempt ended: what it means, the reply when one came, and its record."""

    outcome: Outcome
    reply: UpstreamReply | None
    record: AttemptRecord


@dataclass(frozen=True)
class CallBudget:
    """How long the client waits for the call, and whether that limit is our caller's deadline
    rather than the pool's own call time-out."""

    timeout: float
    deadline_bound: bool

    @classmethod
    def of(cls, call_timeout: float, left: float | None) -> CallBudget:
        """``left``: seconds to the caller's deadline (``None``: it set none)."""
        if left is None:
            return cls(call_timeout, deadline_bound=False)
        return cls(max(min(call_timeout, left), 0.1), deadline_bound=left <= call_timeout)


def outcome_of(policy: ErrorPolicy, exc: Exception | None, *, account_id: str) -> Outcome:
    """What the end of a call on ``account_id`` means (``exc`` None: it was answered)."""
    if not isinstance(exc, StreamBrokeAfterStart):
        return policy.classify(exc, account_id=account_id)
    outcome = policy.classify(exc.cause, account_id=account_id)
    # Failed after the first byte: report it as failed, never retry a half-sent answer.
    return Outcome(
        kind=outcome.kind,
        breaker=outcome.breaker,
        retry=Retry.NO,
        error=outcome.error or UpstreamFailure(str(exc), account_id=account_id),
    )


def left_unanswered(reply: UpstreamReply | None, exc: Exception | None, outcome: Outcome) -> bool:
    """Whether no answer came back from a call upstream may have admitted: a time-out, a dropped
    connection, a stream cut after it began (an error status is an answer).

    Such a call was charged its input and max_tokens upstream when it arrived, and upstream
    refunds only what it did not generate, when it finishes, without us. Refunding here would
    leave our view above upstream's, and the next reservations would meet 429s."""
    if reply is not None:
        return False
    return isinstance(exc, StreamBrokeAfterStart) or (
        outcome.error is not None and outcome.error.status_code is None
    )


def cut_by_deadline(budget: CallBudget, outcome: Outcome) -> bool:
    """Whether the call timed out because our caller's deadline came (DESIGN 4.4, last row), not
    because the account was slow."""
    return budget.deadline_bound and outcome.error is not None and outcome.error.error_type == "timeout"


def usage_of(reply: UpstreamReply) -> Usage:
    """What an answered call used: cache creation counts as input, cache reads do not."""
    used = reply.message.get("usage") or {}
    return Usage(
        input_tokens=int(used.get("input_tokens") or 0) + int(used.get("cache_creation_input_tokens") or 0),
        output_tokens=int(used.get("output_tokens") or 0),
    )


def attempt_record(
    account_id: str, outcome: Outcome, reply: UpstreamReply | None, latency_ms: float
) -> AttemptRecord:
    error = outcome.error
    if error is not None:
        return AttemptRecord(
            account_id=account_id,
            outcome=outcome.kind.value,
            status_code=error.status_code,
            error_type=error.error_type,
            request_id=error.request_id,
            latency_ms=latency_ms,
        )
    return AttemptRecord(
        account_id=account_id,
        outcome=outcome.kind.value,
        status_code=200 if reply is not None else None,
        request_id=reply.request_id if reply is not None else None,
        latency_ms=latency_ms,
    )
