"""One SQLite connection (or an object around one) owned by one dedicated thread.

SQLite blocks while it waits for another process's write lock, so every operation of an embedded
store runs on a thread of its own: the event loop never waits on a lock, and the connection is only
ever used from the thread that opened it (sqlite3 connections must not be shared concurrently).

The thread takes its jobs from a queue and hands each result straight to the waiting asyncio
future, without an executor's ``concurrent.futures.Future`` chained to it: a store operation is a
few tens of microseconds of SQLite, and each call makes several (measured, the executor's
bookkeeping cost about as much as the operation).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

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
        self._thread_name = thread_name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
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
        return await self._submit(lambda: self._sync(operation, fn))

    async def aclose(self) -> None:
        """Close the connection on its thread, then the thread; closing twice is fine."""
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._connection is not None:
                self._close(self._connection)
                self._connection = None

        if self._thread is None:
            return
        await self._submit(close)
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    async def _submit(self, work: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._thread_name, daemon=True)
            self._thread.start()
        self._jobs.put((loop, future, work))
        return await future

    def _serve(self) -> None:
        """The thread: each job in turn, its outcome handed to its future on the future's loop."""
        while (job := self._jobs.get()) is not None:
            loop, future, work = job
            try:
                result = work()
            except BaseException as exc:  # handed to the caller, raised there as itself
                _settle_soon(loop, future, None, exc)
            else:
                _settle_soon(loop, future, result, None)


_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def _settle_soon(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, error: BaseException | None
) -> None:
    def settle() -> None:
        if future.cancelled():  # the caller stopped waiting (its task was cancelled): nothing to hand
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(settle)
