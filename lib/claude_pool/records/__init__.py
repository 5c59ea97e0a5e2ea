"""What the pool did, kept in the database: executions (one row per delegation) and batches of
delegations, each recorded around ``Pool.delegate`` by one :class:`RecordedDelegation`.

May import everything below the front ends (``core`` to ``quota``); never ``http`` or ``cli``.
"""

from __future__ import annotations

from claude_pool.records.batch import run_batch
from claude_pool.records.executions import ExecutionFailure, ExecutionNotFound, ExecutionStore
from claude_pool.records.recorded import Recorded, RecordedDelegation, record_delegation
from claude_pool.records.view import ExecutionView

__all__ = [
    "ExecutionFailure",
    "ExecutionNotFound",
    "ExecutionStore",
    "ExecutionView",
    "Recorded",
    "RecordedDelegation",
    "record_delegation",
    "run_batch",
]
