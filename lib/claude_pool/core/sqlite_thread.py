"""One SQLite connection (or an object around one) owned by one dedicated thread.

SQLite blocks while it waits for another process's write lock, so every operation of an embedded
store runs on a thread of its own: the event loop never waits on a lock, and the connection is only
ever used from the thread that opened it (sqlite3 connections must not be shared concurrently).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Generic, TypeVar

from claude_pool.core.backend_errors import backend_errors
from claude_pool.core.errors import BackendUnavailable

__all__ = ["SqliteThread"]

_C = TypeVar("_C")
_T = TypeVar("_T")


class SqliteThread(Generic[_C]):
    """Runs ``fn(connection)`` on the thread, opening the connection (``open_connection``) on first
    use. A ``sqlite3.Error`` becomes :class:`BackendUnavailable` (``<subject> <operation> on
    <path>``); after :meth:`aclose` every call does too."""

    def __init__(
        self,
        subject: str,
        path: Path,
        open_connection: Callable[[], _C],
        close_connection: Callable[[_C], None],
        *,
        thread_name: str,
    ) -> None:
        self._subject = subject
        self._path = path
        self._open = open_connection
        self._close = close_connection
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._connection: _C | None = None
        self._closed = False

    def _sync(self, operation: str, fn: Callable[[_C], _T]) -> _T:
        with backend_errors("embedded", f"{self._subject} {operation} on {self._path}", (sqlite3.Error,)):
            if self._connection is None:  # opened on the thread, the only one that uses it
                self._connection = self._open()
            return fn(self._connection)

    async def run(self, operation: str, fn: Callable[[_C], _T]) -> _T:
        if self._closed:
            raise BackendUnavailable("embedded", f"{self._subject} {operation}: the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._sync, operation, fn)

    async def aclose(self) -> None:
        """Close the connection on its thread, then the thread; closing twice is fine."""
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._connection is not None:
                self._close(self._connection)
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)
