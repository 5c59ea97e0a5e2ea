"""Storage: the SQLModel tables, the database they live in (SQLite or PostgreSQL) and its
migrations (``storage/migrations``, alembic).

May import ``core`` only.
"""

from claude_pool.storage.database import Database
from claude_pool.storage.models import (
    AccountAlert,
    AccountStatus,
    BreakerTransition,
    CapacitySnapshot,
    ClaudeAccount,
    ExecutionStatus,
    OrchestratorExecution,
    QuotaAlert,
    new_id,
    utcnow,
)

__all__ = [
    "AccountAlert",
    "AccountStatus",
    "BreakerTransition",
    "CapacitySnapshot",
    "ClaudeAccount",
    "Database",
    "ExecutionStatus",
    "OrchestratorExecution",
    "QuotaAlert",
    "new_id",
    "utcnow",
]
