"""The delegation loop: what a caller asks (``models``), which accounts may serve
(``directory``), the call to Anthropic (``upstream``), what its outcome means (``classify``) and
who hears about it (``listeners``).

``Pool`` (in ``_engine``) ties them together; its private helpers are ``_request`` (one request's
state across attempts), ``_admission`` (when no account can serve now: wait or refuse) and
``_attempt`` (one account's reservation and permit, given back exactly once).

May import ``core``, ``storage``, ``accounts``, ``capacity``, ``breaker`` and ``runtime``; never
the records, events, quota or front ends built on it.
"""

from __future__ import annotations

from claude_pool.pool._engine import Pool
from claude_pool.pool.listeners import AccountStatusChange, PoolListener, Selected
from claude_pool.pool.models import AttemptRecord, DelegationRequest, DelegationResult, Message, TokenUsage

__all__ = [
    "AccountStatusChange",
    "AttemptRecord",
    "DelegationRequest",
    "DelegationResult",
    "Message",
    "Pool",
    "PoolListener",
    "Selected",
    "TokenUsage",
]
