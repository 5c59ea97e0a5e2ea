"""One acquire call, put in the canonical form both backends work from.

Candidates are sorted by account id (first of duplicates wins) so that a round-robin cursor, a
random tie-break and the differential tests mean the same thing on every backend; buckets are
numbered in order of first appearance and take the limits of their first candidate.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from functools import cached_property

from claude_pool.capacity.model import (
    REASON_BY_CODE,
    BucketLimits,
    Candidate,
    Demand,
    Refusal,
    Reservation,
    Selection,
)
from claude_pool.core.config import Strategy
from claude_pool.core.errors import InvalidInput

__all__ = [
    "AcquirePlan",
    "CanonicalList",
    "Reserve",
    "Reserved",
    "acquire_with",
    "new_reservation_id",
    "random_unit",
    "to_strategy",
]


def to_strategy(value: Strategy | str) -> Strategy:
    try:
        return Strategy(value)
    except ValueError:
        raise InvalidInput(
            "strategy", f"unknown strategy {value!r}", f"use one of {', '.join(s.value for s in Strategy)}"
        ) from None


def new_reservation_id() -> str:
    return uuid.uuid4().hex


def random_unit() -> float:
    """Uniform in [0, 1) from the OS: Lua's PRNG is seeded identically in every script call."""
    return secrets.randbits(53) / (1 << 53)


@dataclass(frozen=True)
class CanonicalList:
    """A candidate list in canonical order: what does not change from one call with it to the next."""

    candidates: tuple[Candidate, ...]
    bucket_ids: tuple[str, ...]
    bucket_limits: tuple[BucketLimits, ...]
    bucket_of: tuple[int, ...]  # per candidate, 0-based bucket number

    @cached_property
    def bucket_number(self) -> dict[str, int]:
        return {b: n for n, b in enumerate(self.bucket_ids)}

    @cached_property
    def members(self) -> tuple[tuple[int, ...], ...]:
        """Per bucket, its candidates' numbers, in order."""
        of: list[list[int]] = [[] for _ in self.bucket_ids]
        for c, b in enumerate(self.bucket_of):
            of[b].append(c)
        return tuple(map(tuple, of))

    @cached_property
    def digest(self) -> str:
        """Names the list's bucket ids (a store registers a list's buckets once)."""
        return hashlib.blake2b("\x1e".join(self.bucket_ids).encode(), digest_size=16).hexdigest()

    @classmethod
    def of(cls, candidates: Sequence[Candidate]) -> CanonicalList:
        unique: dict[str, Candidate] = {}
        for cand in candidates:
            unique.setdefault(cand.account_id, cand)
        ordered = tuple(unique[k] for k in sorted(unique))
        bucket_index: dict[str, int] = {}
        limits: list[BucketLimits] = []
        bucket_of = []
        for cand in ordered:
            if cand.bucket_id not in bucket_index:
                bucket_index[cand.bucket_id] = len(limits)
                limits.append(cand.limits)
            bucket_of.append(bucket_index[cand.bucket_id])
        return cls(ordered, tuple(bucket_index), tuple(limits), tuple(bucket_of))


_RECENT_LISTS = 64
# Callers pass the same list object again and again (1,000 accounts: sorting and hashing them was
# most of an acquire's time in Python); keyed by its id, kept with a copy of what it held, so a list
# changed or dead and its id reused is seen by the comparison (which is by identity first).
_recent: dict[int, tuple[tuple[Candidate, ...], CanonicalList]] = {}


def canonical(candidates: Sequence[Candidate]) -> CanonicalList:
    held = tuple(candidates)
    hit = _recent.get(id(candidates))
    if hit is not None and hit[0] == held:
        return hit[1]
    made = CanonicalList.of(held)
    if len(_recent) >= _RECENT_LISTS:
        _recent.pop(next(iter(_recent)))
    _recent[id(candidates)] = (held, made)
    return made


@dataclass(frozen=True)
class AcquirePlan:
    listed: CanonicalList
    excluded: tuple[bool, ...]
    strategy: Strategy
    need: tuple[int, int, int]
    max_wait: float = 0.0  # the longest a request may be queued for (see _rules.admission)

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return self.listed.candidates

    @property
    def bucket_ids(self) -> tuple[str, ...]:
        return self.listed.bucket_ids

    @property
    def bucket_limits(self) -> tuple[BucketLimits, ...]:
        return self.listed.bucket_limits

    @property
    def bucket_of(self) -> tuple[int, ...]:
        return self.listed.bucket_of

    @classmethod
    def build(
        cls,
        candidates: Sequence[Candidate],
        demand: Demand,
        strategy: Strategy | str,
        sticky_key: str | None,
        exclude: Collection[str],
        max_wait: float = 0.0,
    ) -> AcquirePlan:
        listed = canonical(candidates)
        resolved = to_strategy(strategy)
        if resolved is Strategy.STICKY and not sticky_key:
            resolved = Strategy.LEAST_LOADED  # nothing to stick to: the documented fallback
        excluded = frozenset(exclude)
        return cls(
            listed=listed,
            excluded=tuple(c.account_id in excluded for c in listed.candidates)
            if excluded
            else (False,) * len(listed.candidates),
            strategy=resolved,
            need=(demand.requests, demand.input_tokens, demand.output_tokens),
            max_wait=max(0.0, float(max_wait)),
        )

    def selection(
        self,
        chosen: int | None,
        reservation_id: str,
        demand: Demand,
        lease_expires_at: float,
        wait: float,
        refusals: Sequence[tuple[int, int, float | None]],
        levels_known: bool = True,
    ) -> Selection:
        """Build the result from 0-based candidate numbers and reason codes."""
        reservation = None
        if chosen is not None:
            cand = self.candidates[chosen]
            reservation = Reservation(
                reservation_id, cand.account_id, cand.bucket_id, demand, lease_expires_at, wait, levels_known
            )
        return Selection(
            reservation,
            [
                Refusal(self.candidates[c].account_id, REASON_BY_CODE[code], until)
                for c, code, until in refusals
            ],
        )


# A backend's atomic step of acquire: (plan, reservation id, lease ttl, (sticky key, its ttl) or None)
# -> the chosen candidate (0-based, None: none can serve), its lease's expiry, its wait before sending,
# the refusals as (candidate number, reason code, until), and whether the chosen bucket's levels are
# known (see Reservation.levels_known).
Reserved = tuple[int | None, float, float, list[tuple[int, int, float | None]], bool]
Reserve = Callable[[AcquirePlan, str, float, tuple[str, float] | None], Awaitable[Reserved]]


async def acquire_with(
    reserve: Reserve,
    candidates: Sequence[Candidate],
    demand: Demand,
    strategy: Strategy | str,
    sticky_key: str | None,
    sticky_ttl: float,
    lease_ttl: float,
    exclude: Collection[str],
    max_wait: float = 0.0,
) -> Selection:
    """``CapacityStore.acquire`` around a backend's ``reserve``: the canonical plan (no candidate
    left: an empty selection, no backend call), a new reservation id, the selection answered."""
    plan = AcquirePlan.build(candidates, demand, strategy, sticky_key, exclude, max_wait)
    if not plan.candidates:
        return Selection(None, [])
    reservation_id = new_reservation_id()
    sticky = (sticky_key, float(sticky_ttl)) if sticky_key else None
    chosen, expiry, wait, refusals, known = await reserve(plan, reservation_id, float(lease_ttl), sticky)
    return plan.selection(chosen, reservation_id, demand, expiry, wait, refusals, known)
