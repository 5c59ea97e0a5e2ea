"""Per-account circuit breakers shared by every worker (DESIGN.md 4.4).

breaker = CircuitBreaker(open_breaker_store(settings), config.circuit_breaker,
                         listeners=[LoggingListener()])
permit = await breaker.allow(account_id)
if permit:                      # a Denied is falsy and says until when
    outcome = classify(exc, account_id=account_id)   # or SUCCESS
    await breaker.record(account_id, outcome.breaker, permit=permit)

Laid out like ``capacity``: the contract in ``store``, values in ``model``, Redis (one Lua script per
method in ``lua/``) and embedded SQLite backends, the state machine both run in ``_states``; who hears
of a transition in ``listeners``, the database's record of them in ``history``.

May import ``core`` and ``storage`` (for ``history``).
"""

from __future__ import annotations

from claude_pool.breaker.breaker import CircuitBreaker
from claude_pool.breaker.embedded_store import EmbeddedBreakerStore
from claude_pool.breaker.factory import open_breaker_store
from claude_pool.breaker.listeners import BreakerListener, LoggingListener
from claude_pool.breaker.model import (
    DEFAULT_PROBE_TTL_SECONDS,
    BreakerEffect,
    BreakerParams,
    BreakerRecord,
    BreakerView,
    Denied,
    Permit,
    State,
    StoreResult,
    Transition,
    Verdict,
)
from claude_pool.breaker.redis_store import RedisBreakerStore
from claude_pool.breaker.store import BreakerStore

__all__ = [
    "DEFAULT_PROBE_TTL_SECONDS",
    "BreakerEffect",
    "BreakerListener",
    "BreakerParams",
    "BreakerRecord",
    "BreakerStore",
    "BreakerView",
    "CircuitBreaker",
    "Denied",
    "EmbeddedBreakerStore",
    "LoggingListener",
    "Permit",
    "RedisBreakerStore",
    "State",
    "StoreResult",
    "Transition",
    "Verdict",
    "open_breaker_store",
]
