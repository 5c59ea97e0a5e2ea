"""Continuous token buckets, one set (requests, input tokens, output tokens) per organization.

Pure arithmetic over a ``now`` passed in (monotonic seconds), so tests can drive time by hand.
"""

from __future__ import annotations

import math

from claude_pool.simulator.scenario import Limits

__all__ = ["METRICS", "OrgBuckets", "TokenBucket"]

#: Bucket names, in the order admission checks them (and reports the first that lacks room).
METRICS = ("requests", "input_tokens", "output_tokens")


class TokenBucket:
    """Capacity = the per-minute limit; refilled limit/60 per second, continuously; starts full."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, limit: int, now: float) -> None:
        self.capacity = float(limit)
        self.rate = limit / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def has(self, amount: float) -> bool:
        return self.level >= amount

    def take(self, amount: float) -> None:
        self.level -= amount

    def give_back(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)

    def seconds_until(self, amount: float) -> float:
        """Time until ``amount`` fits; a request larger than the capacity waits for a full bucket."""
        need = min(amount, self.capacity) - self.level
        return need / self.rate if need > 0 else 0.0

    def seconds_until_full(self) -> float:
        return (self.capacity - self.level) / self.rate

    def set_limit(self, limit: int) -> None:
        # A tier change keeps what was used: a raise gives headroom at once, a cut may leave none.
        used = self.capacity - self.level
        self.capacity = float(limit)
        self.rate = limit / 60.0
        self.level = max(0.0, self.capacity - used)


class OrgBuckets:
    __slots__ = ("input_tokens", "limits", "output_tokens", "requests")

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.requests = TokenBucket(limits.rpm, now)
        self.input_tokens = TokenBucket(limits.itpm, now)
        self.output_tokens = TokenBucket(limits.otpm, now)

    def refill(self, now: float) -> None:
        self.requests.refill(now)
        self.input_tokens.refill(now)
        self.output_tokens.refill(now)

    def try_admit(self, input_tokens: int, max_output_tokens: int, now: float) -> str | None:
        """Charge one request, its input and its ``max_tokens`` if all three fit; else charge nothing
        and name the first bucket lacking room."""
        self.refill(now)
        if not self.requests.has(1):
            return "requests"
        if not self.input_tokens.has(input_tokens):
            return "input_tokens"
        if not self.output_tokens.has(max_output_tokens):
            return "output_tokens"
        self.requests.take(1)
        self.input_tokens.take(input_tokens)
        self.output_tokens.take(max_output_tokens)
        return None

    def refund_output(self, unused: int, now: float) -> None:
        """OTPM was charged ``max_tokens`` up front; give back what the answer did not use."""
        if unused > 0:
            self.output_tokens.refill(now)
            self.output_tokens.give_back(unused)

    def retry_after(self, input_tokens: int, max_output_tokens: int, now: float) -> int:
        """Whole seconds (ceil, at least 1) until every bucket has room for this request."""
        self.refill(now)
        wait = max(
            self.requests.seconds_until(1),
            self.input_tokens.seconds_until(input_tokens),
            self.output_tokens.seconds_until(max_output_tokens),
        )
        return max(1, math.ceil(wait))

    def set_limits(self, limits: Limits, now: float) -> None:
        self.refill(now)
        self.limits = limits
        self.requests.set_limit(limits.rpm)
        self.input_tokens.set_limit(limits.itpm)
        self.output_tokens.set_limit(limits.otpm)
