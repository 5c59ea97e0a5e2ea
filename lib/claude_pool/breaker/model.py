"""The values the breaker passes around: parameters, the stored record, views, permits, transitions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from claude_pool.core.config import BreakerConfig

__all__ = [
    "DEFAULT_PROBE_TTL_SECONDS",
    "BreakerEffect",
    "BreakerParams",
    "BreakerRecord",
    "BreakerView",
    "Denied",
    "Permit",
    "State",
    "StoreResult",
    "Transition",
    "Verdict",
]

# A probe is an ordinary call, and a long non-streaming call may take ten minutes; a probe slot
# held longer than this is presumed to belong to a dead worker and is given to someone else.
DEFAULT_PROBE_TTL_SECONDS = 600.0


class BreakerEffect(StrEnum):
    """What an outcome does to the account's circuit breaker."""

    SUCCESS = "success"
    FAILURE = "failure"
    NOT_COUNTED = "not_counted"


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Verdict(StrEnum):
    """What one store operation did."""

    ALLOW = "allow"  # closed: go ahead
    PROBE = "probe"  # half-open: go ahead, holding a probe slot
    DENY = "deny"
    COUNTED = "counted"  # the result changed (or confirmed) the record
    IGNORED = "ignored"  # a stale or uncounted result: nothing changed
    RELEASED = "released"  # a probe slot was given back without a verdict
    RESET = "reset"
    FORCED = "forced"


@dataclass(frozen=True)
class BreakerParams:
    """The configuration, as the store scripts take it on every call (so a reload applies at once)."""

    failure_threshold: int = 5
    timeout_seconds: float = 300.0
    half_open_max_calls: int = 1
    backoff_multiplier: float = 2.0
    max_timeout_seconds: float = 3600.0
    probe_ttl_seconds: float = DEFAULT_PROBE_TTL_SECONDS

    @classmethod
    def from_config(
        cls, config: BreakerConfig, *, probe_ttl_seconds: float = DEFAULT_PROBE_TTL_SECONDS
    ) -> BreakerParams:
        return cls(
            failure_threshold=config.failure_threshold,
            timeout_seconds=config.timeout_seconds,
            half_open_max_calls=config.half_open_max_calls,
            backoff_multiplier=config.backoff_multiplier,
            max_timeout_seconds=config.max_timeout_seconds,
            probe_ttl_seconds=probe_ttl_seconds,
        )

    def open_timeout(self, trips: int) -> float:
        """How long the ``trips``-th consecutive opening lasts."""
        timeout = self.timeout_seconds * self.backoff_multiplier ** max(trips - 1, 0)
        return min(timeout, self.max_timeout_seconds)


@dataclass(frozen=True)
class BreakerRecord:
    """What is stored per account. ``state`` is the stored one: ``open`` past its timeout reads as
    half-open (see :meth:`effective_state`) until a probe is let through and stores it so."""

    state: State = State.CLOSED
    failures: int = 0
    opened_at: float | None = None
    open_timeout: float = 0.0
    trips: int = 0
    # Bumped by every transition, so that a result of a call let through before it is ignored.
    epoch: int = 0

    @property
    def open_until(self) -> float | None:
        if self.state is State.CLOSED or self.opened_at is None:
            return None
        return self.opened_at + self.open_timeout

    def effective_state(self, now: float) -> State:
        until = self.open_until
        if self.state is State.OPEN and until is not None and now >= until:
            return State.HALF_OPEN
        return self.state


@dataclass(frozen=True)
class BreakerView:
    """One account's breaker as the pool and ``accounts list`` see it."""

    account_id: str
    state: State
    consecutive_failures: int = 0
    opened_at: float | None = None
    open_until: float | None = None
    trips: int = 0
    probes_in_flight: int = 0
    #: Which run of the breaker this is (each trip and each reset starts a new one): a result
    #: recorded with an older epoch's permit counts for nothing.
    epoch: int = 0

    @property
    def available(self) -> bool:
        """Whether a call could be let through now (half-open: only if a probe slot may be free)."""
        return self.state is not State.OPEN


@dataclass(frozen=True)
class StoreResult:
    """What a store operation answers; a transition happened when ``from_state != record.state``."""

    verdict: Verdict
    from_state: State
    record: BreakerRecord
    now: float
    until: float | None = None
    reason: str = ""

    @property
    def changed(self) -> bool:
        return self.from_state is not self.record.state


@dataclass(frozen=True)
class Transition:
    account_id: str
    from_state: State
    to_state: State
    reason: str
    consecutive_failures: int
    open_until: float | None
    at: float
    trips: int = 0

    @property
    def at_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)

    @property
    def open_until_datetime(self) -> datetime | None:
        return None if self.open_until is None else datetime.fromtimestamp(self.open_until, UTC)


@dataclass(frozen=True)
class Permit:
    """Leave to make one call. Give it back to :meth:`CircuitBreaker.record`."""

    account_id: str
    probe: bool = False
    token: str | None = None
    epoch: int | None = None

    allowed = True

    def __bool__(self) -> Literal[True]:  # Literal: `if not permit` narrows Permit | Denied to Denied
        return True


@dataclass(frozen=True)
class Denied:
    """No call now. ``until`` is when the account may be tried again (for a full half-open: the
    latest moment a probe slot frees up)."""

    account_id: str
    state: State
    until: float | None
    reason: str

    allowed = False

    def __bool__(self) -> Literal[False]:
        return False

    @property
    def until_datetime(self) -> datetime | None:
        return None if self.until is None else datetime.fromtimestamp(self.until, UTC)
