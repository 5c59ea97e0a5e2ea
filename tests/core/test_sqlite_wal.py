"""A store file put in WAL mode by several connections at the same moment, as several workers opening
a new store file together do: SQLite refuses some of them at once ("database is locked", without
waiting its busy timeout, which could deadlock the two); the store tries again."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from claude_pool.core.sqlite_wal import use_wal

OPENERS = 6


def _open_together(path: Path) -> list[BaseException]:
    """``OPENERS`` connections, each on its own thread, put ``path`` in WAL mode at once."""
    start, failures = threading.Barrier(OPENERS), []

    def open_one() -> None:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            start.wait()
            use_wal(connection, timeout=30)
            connection.execute("CREATE TABLE IF NOT EXISTS t (x)")
        except sqlite3.Error as exc:
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=open_one) for _ in range(OPENERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_new_store_files_opened_by_many_at_once_all_open(tmp_path: Path) -> None:
    # With a plain PRAGMA, 35 of 1,200 such openings failed (200 files), measured on this machine.
    for n in range(40):
        path = tmp_path / f"store-{n}.db"
        assert _open_together(path) == []
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_wal_mode_gives_up_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN")
    holder.execute("SELECT * FROM t").fetchall()  # a read under way holds the file
    opener = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        use_wal(opener, timeout=0.2)
    holder.close()
    opener.close()
