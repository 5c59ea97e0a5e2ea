"""Why no account can take a request now, and how long a request may be queued: the pure part of
the pool's admission (``Pool._admit`` reads the stores; nothing here does)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from claude_pool.breaker import BreakerView
from claude_pool.capacity import Candidate, Refusal
from claude_pool.core.config import AdmissionConfig
from claude_pool.core.errors import AccountUnavailability, NoAccountAvailable
from claude_pool.pool.directory import PoolAccount
from claude_pool.storage import AccountStatus

__all__ = [
    "PROBE_TAKEN",
    "Eligible",
    "NoAccountNow",
    "QueueWatch",
    "StoreOutage",
    "TenantAccounts",
    "as_datetime",
    "refusal_reasons",
    "refused",
]

PROBE_TAKEN = "half-open: its probe slot is taken by another call"


@dataclass(frozen=True)
class TenantAccounts:
    """An organization's accounts in the pool: every one by id, the active ones (in the directory's
    order) and why each other one may not serve."""

    accounts: Mapping[str, PoolAccount]
    active: list[PoolAccount]
    reasons: list[AccountUnavailability]

    @classmethod
    def of(cls, every: Sequence[PoolAccount], organization_id: str) -> TenantAccounts:
        # A tenant's requests run on its own accounts only: never on another's keys or spend.
        accounts = [a for a in every if a.organization_id == organization_id]
        if not accounts:
            raise NoAccountAvailable(
                [], message=f"organization {organization_id!r} has no account in the pool; register one first"
            )
        active, reasons = [], []
        for acc in accounts:
            if acc.status == AccountStatus.ACTIVE:
                active.append(acc)
            else:
                status = acc.status.replace("_", " ")
                reasons.append(AccountUnavailability(acc.id, acc.name, status, as_datetime(acc.status_until)))
        return cls({a.id: a for a in accounts}, active, reasons)

    def eligible(self, breakers: Mapping[str, BreakerView]) -> Eligible:
        """The active accounts whose circuit lets a call through (closed, or half-open with a probe
        slot that may be free), given the breakers as just read."""
        reasons, candidates = list(self.reasons), []
        for acc in self.active:
            view = breakers.get(acc.id)
            if view is not None and not view.available:
                reasons.append(AccountUnavailability(acc.id, acc.name, "circuit open", as_datetime(view.open_until)))
            else:
                candidates.append(acc.candidate)
        return Eligible(self.accounts, candidates, reasons, breakers)


@dataclass(frozen=True)
class Eligible:
    """A tenant's accounts on one admission pass: every one by id, those that may serve now as the
    capacity store's candidates, why each other may not, and the breakers as read on the way."""

    accounts: Mapping[str, PoolAccount]
    candidates: list[Candidate]
    reasons: list[AccountUnavailability]
    breakers: Mapping[str, BreakerView]


@dataclass(frozen=True)
class NoAccountNow:
    """No account could be admitted on this pass; ``reasons`` says why, per account."""

    reasons: list[AccountUnavailability]
    # A half-open account's probe slot was taken by another call: the others may serve at once,
    # so the request tries again without waiting.
    retry_at_once: bool = False


class QueueWatch:
    """The queue bound of one organization's accounts, adapted the way CoDel adapts its drops.

    Each request reports the queue as it found it: the wait it was given, or would have needed
    (0: served at once, the queue is empty). A queue is judged once per window of
    ``standing_after_seconds``: one that has not emptied, did not drain at any point of the window
    (never fell well below the longest it had been) and is not draining now has stood, which is
    sustained overload, where waiting serves no more requests, only later; it is then shed down to
    ``target_queue_seconds`` until a request is served at once again. A queue that drains (a
    burst passing) keeps the generous bound, ``max_queue_seconds``, so that a burst is absorbed up
    to the deadlines; so does one that drained and then grew again within the window (the next
    burst), which a look at its two ends alone would take for a queue that stood. A queue that
    stands again within one window of leaving the tight bound is tight at once (CoDel's memory of
    a recent dropping state), so that one lucky request does not reopen it to its full length.

    Each worker watches on its own, but what it watches is global: the waits come from the shared
    store's one queue per bucket. Times are ``time.monotonic()`` seconds.
    """

    # A queue within this share of its window's longest is not draining.
    NOT_DRAINING = 0.9
    # A queue drained when it fell below that share of its longest by more than this too: the
    # waits one worker sees jitter by its arrivals' gaps, which is not a drain.
    DRAINED_SECONDS = 1.0

    def __init__(self, config: AdmissionConfig) -> None:
        self.config = config
        self._tight = False
        self._window: _Window | None = None
        self._left_tight_at: float | None = None

    def bound(self, now: float) -> float:
        config = self.config
        return config.target_queue_seconds if self._tight else config.max_queue_seconds

    def observe(self, now: float, wait: float) -> None:
        """A request found the queue ``wait`` seconds long (0: it was served at once)."""
        interval = self.config.standing_after_seconds
        if wait <= 0:
            if self._tight:
                self._left_tight_at = now
            self._tight, self._window = False, None
            return
        window = self._window
        if window is None:
            left = self._left_tight_at
            self._tight = self._tight or (left is not None and now - left < interval)
            self._window = _Window(now, wait)
            return
        window.longest = max(window.longest, wait)
        fell_by = window.longest - wait
        window.drained = window.drained or fell_by > max((1 - self.NOT_DRAINING) * window.longest, self.DRAINED_SECONDS)
        if self._tight or now - window.start < interval:
            return
        if not window.drained and wait >= self.NOT_DRAINING * window.longest:
            self._tight = True  # it stood for a whole window without draining
        else:
            self._window = _Window(now, wait)  # draining, or drained meanwhile: judged again after another window


@dataclass
class _Window:
    """One judging window of a ``QueueWatch``: when it began, the longest wait seen in it, and
    whether the queue drained at some point of it."""

    start: float
    longest: float
    drained: bool = False


class StoreOutage:
    """The pauses of one request that waits for a store to answer again: short at first (a blip
    is over in milliseconds), doubling up to half a second, and never past the deadline."""

    FIRST_PAUSE = 0.05
    LONGEST_PAUSE = 0.5

    def __init__(self) -> None:
        self._pause = self.FIRST_PAUSE

    def next_pause(self, left: float | None) -> float | None:
        """Seconds to wait before asking again, or None: no deadline, or no time left for it."""
        if left is None or left <= self._pause:
            return None
        pause = self._pause
        self._pause = min(self._pause * 2, self.LONGEST_PAUSE)
        return pause


def as_datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def refusal_reasons(
    refusals: Sequence[Refusal], accounts: Mapping[str, PoolAccount]
) -> list[AccountUnavailability]:
    """The capacity store's refusals, told with the accounts' names."""
    reasons = []
    for refusal in refusals:
        account = accounts[refusal.account_id]
        reasons.append(
            AccountUnavailability(account.id, account.name, refusal.reason, as_datetime(refusal.until))
        )
    return reasons


def refused(reasons: Sequence[AccountUnavailability], *, left: float | None) -> NoAccountAvailable:
    """The error for a request that no account admits; it says when to retry, or that the request
    cannot be served before its deadline (``left`` seconds away) at all."""
    error = NoAccountAvailable(reasons)
    if left is not None and error.retry_after is not None and error.retry_after >= left:
        return NoAccountAvailable(
            reasons,
            message=f"no account can serve before the deadline (in {max(left, 0):.1f}s):\n"
            + "\n".join(f"  - {r}" for r in reasons),
        )
    return error
