"""Why no account can take a request now, and whether waiting can help: the pure part of the pool's
admission (``Pool._admit`` reads the stores; nothing here does)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from claude_pool.capacity import Refusal
from claude_pool.core.errors import AccountUnavailability, NoAccountAvailable
from claude_pool.pool.directory import PoolAccount

__all__ = [
    "PROBE_TAKEN",
    "NoAccountNow",
    "as_datetime",
    "cannot_wait",
    "recovery_wait",
    "refusal_reasons",
    "too_late",
]

PROBE_TAKEN = "half-open: its probe slot is taken by another call"

# Longest single sleep while waiting for capacity: short enough to notice a recovery that the
# refusals could not predict (a breaker closing, an account enabled elsewhere).
_MAX_WAIT_STEP = 5.0

# Shortest sleep: a recovery already due (or past) must not turn the wait into a busy loop.
_MIN_WAIT_STEP = 0.01


@dataclass(frozen=True)
class NoAccountNow:
    """No account could be admitted on this pass; ``reasons`` says why, per account."""

    reasons: list[AccountUnavailability]
    # A half-open account's probe slot was taken by another call: the others may serve at once,
    # so the request tries again without waiting.
    retry_at_once: bool = False


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


def _earliest_recovery(reasons: Sequence[AccountUnavailability]) -> datetime | None:
    waits = [r.until for r in reasons if r.until is not None]
    return min(waits) if waits else None


def recovery_wait(
    reasons: Sequence[AccountUnavailability], *, left: float | None, call_seconds: float, now: float
) -> float | None:
    """Seconds to sleep before trying again, or ``None`` when waiting cannot help: the request has
    no deadline (``left`` is None), no account recovers by waiting, or none recovers early enough
    for a call of ``call_seconds`` to finish before the deadline."""
    recovery = _earliest_recovery(reasons)
    if left is None or recovery is None:
        return None
    wait = recovery.timestamp() - now
    # Capacity that comes back too late for the call to finish would only be spent on a call
    # timed out at the deadline (and charged upstream all the same).
    if wait > left - call_seconds:
        return None
    return min(max(wait, _MIN_WAIT_STEP), _MAX_WAIT_STEP)


def cannot_wait(reasons: Sequence[AccountUnavailability], *, left: float | None) -> NoAccountAvailable:
    """The error for a request that waiting cannot help (``recovery_wait`` returned ``None``)."""
    if left is None or _earliest_recovery(reasons) is None:
        return NoAccountAvailable(reasons)
    return too_late(reasons, left)


def too_late(reasons: Sequence[AccountUnavailability], left: float) -> NoAccountAvailable:
    return NoAccountAvailable(
        reasons,
        message=f"no account can serve before the deadline (in {max(left, 0):.1f}s):\n"
        + "\n".join(f"  - {r}" for r in reasons),
    )
