"""What the pool did, kept in the database: executions (one row per delegation) and batches of
delegations, each recorded around ``Pool.delegate``.

May import everything below the front ends (``core`` to ``quota``); never ``http`` or ``cli``.
"""

from __future__ import annotations

from claude_pool.records.batch import BatchItemOutcome, run_batch
from claude_pool.records.executions import ExecutionNotFound, ExecutionStore

__all__ = ["BatchItemOutcome", "ExecutionNotFound", "ExecutionStore", "run_batch"]
