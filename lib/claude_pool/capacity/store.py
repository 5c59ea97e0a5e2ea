"""The contract every capacity store keeps; ``tests/capacity`` proves it on each backend.

Semantics shared by all backends:

- Each bucket holds three continuous token buckets (requests, input tokens, output tokens). The
  capacity is the per-minute limit, the refill is limit/60 per second, and an unseen bucket is full.
  An upstream limit learned by ``calibrate`` wins over the configured one.
- ``acquire`` chooses among eligible candidates (not excluded, not cooling down, under
  max_in_flight, room for the whole demand in all three buckets) and reserves on the chosen bucket,
  atomically with the choice. It also reclaims the expired leases of the candidates' buckets, so a
  dead worker never holds an in-flight slot past its lease. Least-loaded among many buckets
  (``_rules.WALK_FROM_BUCKETS``) reads them in the order of a fullness index and stops once none
  further can beat the best found: the same choice as reading all, but that a tie is broken among
  the first ``_rules.MAX_TIES`` ready candidates of that order; and a selection that reserved
  names no refusals then (it has not read every bucket).
- **Reserving ahead** (``max_wait`` > 0): when no candidate can serve now but one's levels (or its
  cooldown) will allow the demand within ``max_wait`` seconds, the demand is reserved on it now and
  the reservation says how long to wait before sending (``Reservation.wait_seconds``): the levels go
  below zero, and that debt is the queue. Every later request is placed behind it, in the order the
  store answered, whichever worker or machine asked, and nobody polls. The candidate with the
  shortest wait is chosen; the strategy ranks only candidates that can send at once. A refusal's
  ``until`` is when the same request would be admitted. A queued reservation's lease runs from its
  send time; given back unsent (``settle(request_sent=False)``), its capacity returns at once.
- A lease that expires is reclaimed as if its request went out and produced no output: the request
  and the input tokens stay charged (upstream counted them when the request arrived), the reserved
  output tokens are refunded (upstream charges output as it is generated and a dead worker's
  connection is closed, which stops generation). Over-charging would only cost a little throughput,
  but the output reservation is max_tokens, usually far above what a cut-off call produced.
- A call that outlives its lease period keeps its lease by ``renew`` (the pool renews every third
  of the period while a call is in flight); only a lease nobody renews is a dead worker's.
- ``settle`` is idempotent; a settle arriving after its lease expired is treated exactly as the
  reclaim would (its usage is ignored), so the result does not depend on who got there first.
- **Cold start**: a store opened with ``cold_start="empty"`` takes a bucket it has never seen as
  drained (another client may have spent it), so it admits only what refill brings from then on,
  until upstream's headers calibrate it: the first ``calibrate`` with a limit sets each level to
  upstream's remaining less what the store still holds reserved on the bucket (it may raise the
  level; every later ``calibrate`` only lowers it, and only a ``settle`` with the answer's headers
  raises it, on the conditions it states). ``"full"`` (the store's default; the pool's is
  ``capacity.coldStart``) trusts the configured limits. A view of a cold, uncalibrated bucket says
  ``levels_known=False``, and so does a reservation on one.
- Levels never exceed the capacity, and only reservations made ahead take them below 0: refunds
  are clamped at the capacity; usage above the reservation is charged down to 0 at most
  (calibration from the headers brings in the rest), never deeper into a queue's debt.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection, Sequence
from typing import ClassVar, Literal

from claude_pool.capacity.model import BucketView, Candidate, Demand, Reservation, Selection, Usage
from claude_pool.capacity.ratelimit import RateLimitSnapshot
from claude_pool.core.closing import AsyncClosing
from claude_pool.core.config import Strategy

__all__ = ["DEFAULT_LEASE_TTL", "DEFAULT_STICKY_TTL", "CapacityStore", "ColdStart"]

#: What a store assumes of a bucket it has never seen (see the module docstring).
ColdStart = Literal["full", "empty"]

DEFAULT_LEASE_TTL = 600.0
DEFAULT_STICKY_TTL = 3600.0


class CapacityStore(AsyncClosing):
    """Shared, exact per-account capacity. Every method may raise ``BackendUnavailable``."""

    backend: ClassVar[str]
    #: What the store assumes of a bucket it has never seen (see the module docstring).
    cold_start: ColdStart = "full"

    @abstractmethod
    async def acquire(
        self,
        candidates: Sequence[Candidate],
        demand: Demand,
        *,
        strategy: Strategy | str = Strategy.LEAST_LOADED,
        sticky_key: str | None = None,
        sticky_ttl: float = DEFAULT_STICKY_TTL,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        exclude: Collection[str] = (),
        max_wait: float = 0.0,
    ) -> Selection:
        """Choose an account and reserve ``demand`` on its bucket, in one atomic step, at once or
        (within ``max_wait`` seconds) ahead. When no candidate can serve, ``Selection.reservation``
        is None and ``refusals`` says why, per account, and from when it could."""

    @abstractmethod
    async def settle(
        self,
        reservation: Reservation,
        usage: Usage | None,
        *,
        request_sent: bool = True,
        snapshot: RateLimitSnapshot | None = None,
    ) -> None:
        """Refund what the reservation held but the call did not use, and release its lease.

        ``usage`` given: refund the difference. ``usage`` None and ``request_sent``: keep the request
        charged, refund the tokens. Not sent: refund everything. Idempotent. ``snapshot``: the
        answer's rate-limit headers, which then :meth:`calibrate` the bucket in the same atomic
        step (every answered call does both); and, unlike a calibration on its own, may *raise*
        its levels to upstream's remaining (less its rounding and everything still held on the
        bucket), giving back what upstream did not count (a failed call it did not charge), but
        only when no other call that may have reached upstream left the books after this one was
        sent: one that did may have arrived after upstream's count, and is no longer held."""

    @abstractmethod
    async def renew(self, reservation: Reservation, lease_ttl: float = DEFAULT_LEASE_TTL) -> float | None:
        """Keep a call in flight: its lease now expires ``lease_ttl`` seconds from now (never sooner
        than before). The new expiry (epoch seconds), or None when the lease has already expired,
        been settled or been reclaimed: a lease is never revived."""

    @abstractmethod
    async def calibrate(self, bucket_id: str, snapshot: RateLimitSnapshot) -> None:
        """Correct the local view from upstream's headers: adopt a changed limit, and lower a level
        to upstream's remaining (less the queue upstream cannot have counted yet); never raise it
        (see ``settle`` for when an answer's headers do)."""

    @abstractmethod
    async def cool_down(self, bucket_id: str, until: float) -> None:
        """Put the bucket aside until ``until`` (epoch seconds); the later of old and new wins."""

    @abstractmethod
    async def view(self, candidates: Sequence[Candidate]) -> list[BucketView]:
        """The live state of each candidate's bucket, in the order given."""

    @abstractmethod
    async def reclaim_expired(self) -> int:
        """Return the capacity of every expired lease (see the module docstring); the count."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections and threads. The store is unusable afterwards; closing twice is fine."""
