"""claude-pool: run Claude at volume across many Anthropic accounts.

The library knows nothing of Prefect. For a service that wants the lowest latency::

    from claude_pool import DelegationRequest, Pool, Runtime

    runtime = Runtime.from_env()
    async with Pool.open(runtime) as pool:
        result = await pool.delegate(DelegationRequest(organization_id="acme", message="Hello"))
"""

from __future__ import annotations

from claude_pool.accounts.registry import AccountCreate, AccountService, AccountUpdate, AccountView
from claude_pool.core.config import PoolConfig, Strategy, load_config
from claude_pool.core.errors import (
    CallerRequestError,
    ClaudePoolError,
    ConfigError,
    CredentialsRejected,
    DeadlineExceeded,
    InvalidInput,
    NoAccountAvailable,
    Overloaded,
    RateLimited,
    SpendExhausted,
    UpstreamError,
    UpstreamFailure,
)
from claude_pool.core.settings import Settings
from claude_pool.pool import Pool
from claude_pool.pool.models import AttemptRecord, DelegationRequest, DelegationResult, Message, TokenUsage
from claude_pool.records.executions import ExecutionStore
from claude_pool.runtime import Runtime

__version__ = "0.1.0"

__all__ = [
    "AccountCreate",
    "AccountService",
    "AccountUpdate",
    "AccountView",
    "AttemptRecord",
    "CallerRequestError",
    "ClaudePoolError",
    "ConfigError",
    "CredentialsRejected",
    "DeadlineExceeded",
    "DelegationRequest",
    "DelegationResult",
    "ExecutionStore",
    "InvalidInput",
    "Message",
    "NoAccountAvailable",
    "Overloaded",
    "Pool",
    "PoolConfig",
    "RateLimited",
    "Runtime",
    "Settings",
    "SpendExhausted",
    "Strategy",
    "TokenUsage",
    "UpstreamError",
    "UpstreamFailure",
    "load_config",
]
