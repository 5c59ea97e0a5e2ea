"""The delegation loop: what a caller asks (``models``), which accounts may serve
(``directory``), the call to Anthropic (``upstream``), what its outcome means (``classify``), who
hears about it (``listeners``) and the loop that ties them together (``Pool``, in ``_engine``).

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
