"""The plain values that cross the capacity store's interface.

All are frozen dataclasses of builtins so they pickle (a reservation travels between Prefect tasks)
and compare by value. Times are epoch seconds (floats): on Redis they come from the server's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "REASON_COOLING_DOWN",
    "REASON_DEMAND_EXCEEDS_LIMIT",
    "REASON_EXCLUDED",
    "REASON_INPUT_EXHAUSTED",
    "REASON_IN_FLIGHT",
    "REASON_OUTPUT_EXHAUSTED",
    "REASON_REQUESTS_EXHAUSTED",
    "BucketLimits",
    "BucketView",
    "Candidate",
    "Demand",
    "Refusal",
    "Reservation",
    "Selection",
    "Usage",
]

REASON_COOLING_DOWN = "cooling down (429)"
REASON_REQUESTS_EXHAUSTED = "requests per minute exhausted"
REASON_INPUT_EXHAUSTED = "input tokens per minute exhausted"
REASON_OUTPUT_EXHAUSTED = "output tokens per minute exhausted"
REASON_IN_FLIGHT = "too many requests in flight"
REASON_DEMAND_EXCEEDS_LIMIT = "demand exceeds limit"
REASON_EXCLUDED = "already tried for this request"

# Reason codes as the Lua scripts return them (small integers are cheaper than strings on the wire).
REASON_BY_CODE: dict[int, str] = {
    1: REASON_COOLING_DOWN,
    2: REASON_REQUESTS_EXHAUSTED,
    3: REASON_INPUT_EXHAUSTED,
    4: REASON_OUTPUT_EXHAUSTED,
    5: REASON_IN_FLIGHT,
    6: REASON_DEMAND_EXCEEDS_LIMIT,
    7: REASON_EXCLUDED,
}
CODE_BY_REASON: dict[str, int] = {v: k for k, v in REASON_BY_CODE.items()}


@dataclass(frozen=True)
class BucketLimits:
    """Per-minute limits of one bucket; each is also the bucket's capacity (it starts full)."""

    rpm: int
    itpm: int
    otpm: int
    max_in_flight: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "itpm", "otpm"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_in_flight is not None and self.max_in_flight <= 0:
            raise ValueError(f"max_in_flight must be positive or None, got {self.max_in_flight}")


@dataclass(frozen=True)
class Candidate:
    """An account that may serve. Candidates with the same ``bucket_id`` share one set of buckets
    (keys of one Anthropic organization, or one model class of it)."""

    account_id: str
    bucket_id: str
    limits: BucketLimits
    priority: int = 100
    weight: int = 1


@dataclass(frozen=True)
class Demand:
    """What one call reserves: ``input_tokens`` is the estimate, ``output_tokens`` is max_tokens."""

    input_tokens: int
    output_tokens: int
    requests: int = 1

    def __post_init__(self) -> None:
        if self.input_tokens < 0 or self.output_tokens < 0 or self.requests < 0:
            raise ValueError("demand must not be negative")


@dataclass(frozen=True)
class Usage:
    """What a call used: input = input + cache creation tokens (cache reads do not count)."""

    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Reservation:
    """Capacity held for one call. ``wait_seconds`` > 0: the call was given its place in the
    bucket's queue and must not be sent before that many seconds after ``acquire`` answered.
    ``levels_known`` False: the place was computed on a cold store's guess (an unseen bucket is
    empty until upstream's headers calibrate it), and may be much nearer once they have."""

    reservation_id: str
    account_id: str
    bucket_id: str
    demand: Demand
    lease_expires_at: float
    wait_seconds: float = 0.0
    levels_known: bool = True


@dataclass(frozen=True)
class Refusal:
    """Why a candidate could not serve and when a request like this one could be admitted (``until``
    None: not by waiting)."""

    account_id: str
    reason: str
    until: float | None


@dataclass(frozen=True)
class Selection:
    reservation: Reservation | None
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def earliest_recovery(self) -> float | None:
        waits = [r.until for r in self.refusals if r.until is not None]
        return min(waits) if waits else None


@dataclass(frozen=True)
class BucketView:
    """One candidate's bucket as seen at ``observed_at``: levels are what is left to spend now."""

    account_id: str
    bucket_id: str
    limits: BucketLimits
    requests: float
    input_tokens: float
    output_tokens: float
    cooldown_until: float | None
    in_flight: int
    observed_at: float
    # False while a store that starts cold buckets empty has not heard upstream's headers for this
    # one yet: its levels are a safe assumption, not a measure of use (quota alerts skip them).
    levels_known: bool = True

    @property
    def headroom(self) -> float:
        """The smallest remaining fraction over the three limits (0 = exhausted, 1 = full)."""
        return min(
            self.requests / self.limits.rpm,
            self.input_tokens / self.limits.itpm,
            self.output_tokens / self.limits.otpm,
        )
