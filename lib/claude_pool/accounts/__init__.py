"""The account registry: register, list, update, disable, enable, rotate and delete accounts,
with every key encrypted before it is written.

May import ``core`` and ``storage``.
"""

from __future__ import annotations

from claude_pool.accounts.registry import (
    API_KEY_PATTERN,
    AccountCreate,
    AccountService,
    AccountUpdate,
    AccountView,
    effective_limits,
)

__all__ = ["API_KEY_PATTERN", "AccountCreate", "AccountService", "AccountUpdate", "AccountView", "effective_limits"]
