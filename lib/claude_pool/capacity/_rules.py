"""The pure arithmetic and selection rules, in Python.

The embedded store runs these directly; the Lua scripts in ``claude_pool/lua`` implement the same
rules line for line (the contract suite and a differential property test hold them together).
Metrics are always in the order requests, input tokens, output tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from claude_pool.capacity.model import BucketLimits
from claude_pool.core.config import Strategy

__all__ = [
    "MAX_TIES",
    "QUEUEABLE",
    "REMAINING_ROUNDING",
    "TIE_EPSILON",
    "WALK_BATCH",
    "WALK_FROM_BUCKETS",
    "BucketState",
    "Entry",
    "admission",
    "assess",
    "caps_of",
    "choose",
    "clamp_add",
    "first_calibration",
    "full_again_at",
    "fullness_bound",
    "headroom_after",
    "lowered",
    "may_raise",
    "raised",
    "refill",
    "settle_refund",
    "walks",
]

# Upstream rounds the token counts of its remaining headers to the thousand (UPSTREAM.md): a
# first calibration, which may raise a level, takes that much off so that rounding up cannot
# overrun; later ones only lower levels and need no margin.
REMAINING_ROUNDING = (0.0, 1000.0, 1000.0)

# Two headroom scores closer than this are a tie, broken at random so that no account starves.
TIE_EPSILON = 1e-9
SECONDS_PER_MINUTE = 60.0

Triple = tuple[float, float, float]


@dataclass
class BucketState:
    """What a store keeps per bucket. ``levels`` were true at ``updated_at``; ``caps`` are the
    capacities last applied; ``upstream`` the limits learned from headers (they win)."""

    levels: list[float | None] | None = None
    updated_at: float = 0.0
    caps: list[float | None] | None = None
    upstream: list[float | None] | None = None
    cooldown_until: float = 0.0


def caps_of(limits: BucketLimits | None, state: BucketState) -> list[float | None]:
    """Effective capacity per metric: upstream's limit, else the configured one, else the last used."""
    configured = (limits.rpm, limits.itpm, limits.otpm) if limits else (None, None, None)
    stored = state.caps or [None, None, None]
    upstream = state.upstream or [None, None, None]
    return [upstream[m] or configured[m] or stored[m] for m in range(3)]


def refill(
    state: BucketState, caps: Sequence[float | None], now: float, *, cold_empty: bool = False
) -> list[float | None]:
    """Levels at ``now``: each grows by cap/60 per second since ``updated_at``, never past its cap.
    A bucket never seen is full, or empty with ``cold_empty`` (see ``first_calibration``)."""
    out: list[float | None] = []
    elapsed = max(0.0, now - state.updated_at)
    unseen = 0.0 if cold_empty else 1.0
    for m in range(3):
        cap = caps[m]
        if cap is None:
            out.append(None)
            continue
        level = state.levels[m] if state.levels is not None else None
        out.append(cap * unseen if level is None else min(cap, level + elapsed * cap / SECONDS_PER_MINUTE))
    return out


# Least-loaded among this many buckets or more walks the fullness index (see ``full_again_at``)
# instead of reading every bucket: below it a read of all costs less, and breaks ties among all.
WALK_FROM_BUCKETS = 32
WALK_BATCH = 16  # buckets read from the index at a time
MAX_TIES = 16  # the walk stops once this many ready candidates tie for the best score


def walks(strategy: Strategy, bucket_count: int) -> bool:
    return strategy is Strategy.LEAST_LOADED and bucket_count >= WALK_FROM_BUCKETS


def full_again_at(
    levels: Sequence[float | None], caps: Sequence[float | None], now: float, cooldown_until: float
) -> float:
    """When a bucket with these levels at ``now`` is full again in every metric, its cooldown over:
    its score in the fullness index. Refill raises every metric's share of its cap by 1/60 a second,
    so ordering buckets by this time orders them by ``fullness_bound`` at any later moment, until
    the bucket is next written; a metric without level or cap does not count."""
    at = max(now, cooldown_until)
    for m in range(3):
        level, cap = levels[m], caps[m]
        if level is not None and cap is not None:
            at = max(at, now + (cap - level) * SECONDS_PER_MINUTE / cap)
    return at


def fullness_bound(full_at: float, now: float) -> float:
    """The best least-loaded score (``headroom_after``) that a bucket scored ``full_at`` in the
    fullness index can have at ``now``: its least-full metric's share of its cap."""
    return min(1.0, 1.0 - (full_at - now) / SECONDS_PER_MINUTE)


def lowered(level: float, remaining: float, unsent: float) -> float:
    """A level corrected by upstream's ``remaining``: never raised here (calls in flight may not be
    in upstream's count yet; see ``raised``), lowered to what upstream has left less the
    reservations queued to send later, which upstream cannot have counted: forgetting them would
    let the queue's debt be spent twice.

    Lowered even by less than one request, though upstream's whole-number requests count rounds a
    fraction away (a paced queue pays that fraction once): this store's own count can run ahead of
    upstream's, since it charges a call when it reserves it and upstream when the call arrives, and
    a bucket upstream holds full meanwhile refills here but not there. Left uncorrected, such gains
    add up over calls until one is sent into a 429."""
    return min(level, max(0.0, remaining) - unsent)


def may_raise(sent_at: float, ended_at: float) -> bool:
    """Whether the answer to a call sent at ``sent_at`` may raise its bucket's levels to upstream's
    word (``raised``), ``ended_at`` being when the last other call that may have reached upstream
    left the books (settled as sent, or expired). Upstream counted its remaining after this call
    reached it: every call that ended before this one was sent had reached it by then, and every
    call still on the books is held back from the raise; a call that ended since may have reached
    upstream after the count, and its charge, no longer held, would be spent twice."""
    return ended_at <= sent_at


def raised(level: float, remaining: float, rounding: float, outstanding: float, cap: float) -> float:
    """A level raised to what upstream says is left, less its rounding and everything this store
    still holds on the bucket (calls in flight and queued, which upstream may not have counted):
    upstream knows of calls that did not count against its limits (a failure it did not charge,
    a call that never reached it), which this store's own accounting keeps charged."""
    return max(level, first_calibration(remaining - rounding, outstanding, cap))


def first_calibration(remaining: float, outstanding: float, cap: float) -> float:
    """The level of a cold bucket (started empty, see ``refill``) once upstream has told its
    remaining for the first time: what upstream says is left, less everything this store still
    holds reserved on it (calls in flight or queued: those upstream has counted already are taken
    twice, which errs on the safe side), never above the cap. Below zero, it is the queue's debt."""
    return min(cap, remaining - outstanding)


def assess(
    levels: Sequence[float],
    caps: Sequence[float],
    need: Triple,
    now: float,
    cooldown_until: float,
    in_flight: int,
    max_in_flight: int | None,
    earliest_lease_expiry: float | None,
) -> tuple[int, float | None]:
    """(0, None) when the demand fits; else (reason code, until) where until is when every blocking
    condition will have cleared (None: never, the demand is larger than the bucket)."""
    for m in range(3):
        if need[m] > caps[m]:
            return 6, None
    code, until = 0, -math.inf
    if cooldown_until > now:
        code, until = 1, cooldown_until
    if max_in_flight and in_flight >= max_in_flight:
        expiry = earliest_lease_expiry if earliest_lease_expiry is not None else now
        if expiry > until:
            code, until = 5, expiry
    for m in range(3):
        if levels[m] < need[m]:
            ready = now + (need[m] - levels[m]) * SECONDS_PER_MINUTE / caps[m]
            if ready > until:
                code, until = 2 + m, ready
    return (code, until) if code else (0, None)


# Conditions whose end is known in advance, so that a request can be given its place behind them:
# a cooldown's end and the refill of each level. An in-flight cap clears when some call ends,
# which nobody can predict, so a request is never queued behind it.
QUEUEABLE = frozenset({1, 2, 3, 4})


def admission(
    levels: Sequence[float],
    caps: Sequence[float],
    need: Triple,
    now: float,
    cooldown_until: float,
    in_flight: int,
    max_in_flight: int | None,
    earliest_lease_expiry: float | None,
    max_wait: float,
) -> tuple[int, float | None, float]:
    """Whether the demand is admitted, and when it may be sent.

    ``(0, None, wait)``: admitted, to be sent ``wait`` seconds from ``now`` (0: at once). Reserving
    ahead lets the levels go below zero: the debt is the queue, and each later request's wait is
    computed behind it, so the queue is ordered and shared by every worker of the store without
    anyone polling. ``(code, until, 0.0)``: refused, ``until`` being the earliest time at which the
    same request (with the same ``max_wait``) would be admitted, or None when waiting cannot help.
    """
    code, until = assess(levels, caps, need, now, cooldown_until, in_flight, max_in_flight, earliest_lease_expiry)
    if code == 0:
        return 0, None, 0.0
    if until is None or code not in QUEUEABLE or (max_in_flight and in_flight >= max_in_flight):
        return code, until, 0.0
    wait = until - now
    if wait <= max_wait:
        return 0, None, wait
    return code, until - max_wait, 0.0


def headroom_after(levels: Sequence[float], caps: Sequence[float], need: Triple) -> float:
    return min((levels[m] - need[m]) / caps[m] for m in range(3))


@dataclass(frozen=True)
class Entry:
    """An eligible candidate, in the stores' canonical order (sorted by account id)."""

    account_id: str
    score: float
    priority: int
    weight: int
    wait: float = 0.0  # seconds until it may send (see ``admission``); 0: at once


def _pick(tied: list[int], r: float) -> int:
    return tied[min(len(tied) - 1, int(r * len(tied)))]


def _least_loaded(entries: Sequence[Entry], r: float) -> int:
    best = max(e.score for e in entries)
    return _pick([k for k, e in enumerate(entries) if e.score >= best - TIE_EPSILON], r)


def _round_robin(entries: Sequence[Entry], last: str | None) -> int:
    # the first eligible account after the last one chosen, in account-id order, wrapping around
    if last is not None:
        for k, e in enumerate(entries):
            if e.account_id > last:
                return k
    return 0


def _weighted(entries: Sequence[Entry], r: float) -> int:
    total = sum(max(0, e.weight) for e in entries)
    if total <= 0:
        return _pick(list(range(len(entries))), r)
    x, acc = r * total, 0.0
    for k, e in enumerate(entries):
        acc += max(0, e.weight)
        if x < acc:
            return k
    return len(entries) - 1


def _priority(entries: Sequence[Entry], r: float) -> int:
    best = min(e.priority for e in entries)
    return _pick([k for k, e in enumerate(entries) if e.priority == best], r)


def choose(
    strategy: Strategy,
    entries: Sequence[Entry],
    r: float,
    *,
    last_round_robin: str | None = None,
    sticky_account: str | None = None,
) -> int:
    """Index of the chosen entry (``entries`` non-empty); ``r`` is uniform in [0, 1).

    Entries that can send at once are chosen among by the strategy; only when none can is a
    request queued, on the entry where its wait is shortest (whatever the strategy: a strategy
    ranks accounts that can serve, and none can yet)."""
    ready = [k for k, e in enumerate(entries) if e.wait <= 0]
    if not ready:
        shortest = min(e.wait for e in entries)
        return _pick([k for k, e in enumerate(entries) if e.wait <= shortest + TIE_EPSILON], r)
    if len(ready) < len(entries):
        among = [entries[k] for k in ready]
        return ready[_by_strategy(strategy, among, r, last_round_robin, sticky_account)]
    return _by_strategy(strategy, entries, r, last_round_robin, sticky_account)


def _by_strategy(
    strategy: Strategy,
    entries: Sequence[Entry],
    r: float,
    last_round_robin: str | None,
    sticky_account: str | None,
) -> int:
    if strategy is Strategy.ROUND_ROBIN:
        return _round_robin(entries, last_round_robin)
    if strategy is Strategy.WEIGHTED:
        return _weighted(entries, r)
    if strategy is Strategy.PRIORITY:
        return _priority(entries, r)
    if strategy is Strategy.STICKY and sticky_account is not None:
        for k, e in enumerate(entries):
            if e.account_id == sticky_account:
                return k
    return _least_loaded(entries, r)


def settle_refund(reserved: Triple, used: tuple[float, float] | None, *, sent: bool, expired: bool) -> Triple:
    """What goes back to the bucket per metric (negative: usage above the reservation)."""
    if expired:
        return (0.0, 0.0, reserved[2])  # see CapacityStore: a lost call keeps request + input
    if not sent:
        return reserved
    if used is None:
        return (0.0, reserved[1], reserved[2])
    return (0.0, reserved[1] - used[0], reserved[2] - used[1])


def clamp_add(level: float, delta: float, cap: float) -> float:
    """A refund raises the level up to the cap; a charge lowers it down to 0 at most, or not at
    all when the level is already below 0 (queued reservations: a debt is never forgiven)."""
    return min(cap, max(min(level, 0.0), level + delta))
