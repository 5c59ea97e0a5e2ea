"""Why no account can take a request now, and how long a request may be queued: the pure part of
the pool's admission (``Pool._admit`` reads the stores; nothing here does)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from claude_pool.capacity import Refusal
from claude_pool.core.config import AdmissionConfig
from claude_pool.core.errors import AccountUnavailability, NoAccountAvailable
from claude_pool.pool.directory import PoolAccount

__all__ = [
    "PROBE_TAKEN",
    "NoAccountNow",
    "QueueWatch",
    "StoreOutage",
    "as_datetime",
    "refusal_reasons",
    "refused",
]

PROBE_TAKEN = "half-open: its probe slot is taken by another call"


@dataclass(frozen=True)
class NoAccountNow:
    """No account could be admitted on this pass; ``reasons`` says why, per account."""

    reasons: list[AccountUnavailability]
    # A half-open account's probe slot was taken by another call: the others may serve at once,
    # so the request tries again without waiting.
    retry_at_once: bool = False


class QueueWatch:
    """The queue bound of one organization's accounts, adapted the way CoDel adapts its drops.

    A young queue is a burst: it is absorbed up to ``max_queue_seconds``. A queue that has stood
    for ``standing_after_seconds`` (no request admitted at once since) is sustained overload, where
    waiting serves no more requests, only later: it is shed down to ``target_queue_seconds`` until a
    request finds capacity at once again. Leaving the tight bound, a queue that stands again within
    the same interval is tight at once (CoDel's memory of a recent dropping state), so that one lucky
    request does not reopen the queue to its full length.

    Each worker watches on its own, but what it watches is global: the waits come from the shared
    store's one queue per bucket. Times are ``time.monotonic()`` seconds.
    """

    def __init__(self, config: AdmissionConfig) -> None:
        self.config = config
        self._queued_since: float | None = None
        self._left_tight_at: float | None = None

    def tight(self, now: float) -> bool:
        since = self._queued_since
        return since is not None and now - since >= self.config.standing_after_seconds

    def bound(self, now: float) -> float:
        config = self.config
        return config.target_queue_seconds if self.tight(now) else config.max_queue_seconds

    def admitted_at_once(self, now: float) -> None:
        if self.tight(now):
            self._left_tight_at = now
        self._queued_since = None

    def queued(self, now: float) -> None:
        """A request was queued, or refused because the queue was too long."""
        if self._queued_since is not None:
            return
        interval = self.config.standing_after_seconds
        left = self._left_tight_at
        self._queued_since = now - interval if left is not None and now - left < interval else now


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
