"""Putting a SQLite file in WAL mode when other processes may be opening it at the same moment."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

__all__ = ["use_wal"]

_FIRST_PAUSE = 0.01
_LONGEST_PAUSE = 0.2


def use_wal(connection: Any, *, timeout: float) -> None:
    """``PRAGMA journal_mode=WAL`` on ``connection`` (a sqlite3 connection or cursor), tried again
    for up to ``timeout`` seconds while the file is locked.

    Switching the journal mode takes the file's exclusive lock from within a read; when another
    connection holds a lock too, SQLite answers "database is locked" at once rather than wait its
    busy timeout (waiting could deadlock the two). Several workers opening a new store file
    together meet exactly that: seen as a worker failing at start-up, 1 run in CI of 4 processes."""
    give_up = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > give_up:
                raise
        time.sleep(pause)  # on a thread of its own (the store's, or the database's connect)
        pause = min(pause * 2, _LONGEST_PAUSE)
