"""Exact shared capacity per account (DESIGN.md 4.2) and the selection strategies (4.3).

One interface (``CapacityStore`` in ``store``, its values in ``model``), two backends (Redis with one
Lua script per method in ``lua/``, embedded SQLite), one contract test suite. The private modules hold
the arithmetic both backends share (``_rules``, the Python twin of the Lua), the canonical form of an
acquire (``_plan``) and the embedded store's synchronous core (``_sqlite_core``).

May import ``core`` only.
"""

from __future__ import annotations

from claude_pool.capacity.embedded_store import EmbeddedCapacityStore
from claude_pool.capacity.factory import open_capacity_store
from claude_pool.capacity.model import (
    REASON_COOLING_DOWN,
    REASON_DEMAND_EXCEEDS_LIMIT,
    REASON_EXCLUDED,
    REASON_IN_FLIGHT,
    REASON_INPUT_EXHAUSTED,
    REASON_OUTPUT_EXHAUSTED,
    REASON_REQUESTS_EXHAUSTED,
    BucketLimits,
    BucketView,
    Candidate,
    Demand,
    Refusal,
    Reservation,
    Selection,
    Usage,
)
from claude_pool.capacity.ratelimit import MetricSnapshot, RateLimitSnapshot
from claude_pool.capacity.redis_store import RedisCapacityStore
from claude_pool.capacity.store import DEFAULT_LEASE_TTL, DEFAULT_STICKY_TTL, CapacityStore, ColdStart

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_STICKY_TTL",
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
    "CapacityStore",
    "ColdStart",
    "Demand",
    "EmbeddedCapacityStore",
    "MetricSnapshot",
    "RateLimitSnapshot",
    "RedisCapacityStore",
    "Refusal",
    "Reservation",
    "Selection",
    "Usage",
    "open_capacity_store",
]
