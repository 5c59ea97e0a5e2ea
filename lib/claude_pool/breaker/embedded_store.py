"""Breakers in a SQLite file: no server, still shared by every process of one machine.

Each operation is one ``BEGIN IMMEDIATE`` transaction (it takes the write lock before reading, so
two processes cannot both read "4 failures" and both write "5, open"), in WAL mode so readers do
not wait for writers. Lock waits happen on one worker thread per store, never on the event loop.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

from claude_pool.breaker import _states as states
from claude_pool.breaker.model import (
    BreakerEffect,
    BreakerParams,
    BreakerRecord,
    BreakerView,
    State,
    StoreResult,
    Verdict,
)
from claude_pool.breaker.store import BreakerStore
from claude_pool.core.sqlite_thread import SqliteThread
from claude_pool.core.sqlite_wal import use_wal

__all__ = ["EmbeddedBreakerStore"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS breakers (
    account_id   TEXT PRIMARY KEY,
    state        TEXT NOT NULL,
    failures     INTEGER NOT NULL,
    opened_at    REAL,
    open_timeout REAL NOT NULL,
    trips        INTEGER NOT NULL,
    epoch        INTEGER NOT NULL,
    changed_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS breaker_probes (
    account_id TEXT NOT NULL,
    token      TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (account_id, token)
);
"""


class EmbeddedBreakerStore(BreakerStore):
    backend: ClassVar[str] = "embedded"

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_seconds: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout_seconds
        self._thread = SqliteThread(
            "breaker", self.path, self._connect, sqlite3.Connection.close, thread_name="claude-pool-breakers"
        )

    # --- plumbing --------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        use_wal(conn, timeout=self._busy_timeout)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        return conn

    def _transaction(
        self, conn: sqlite3.Connection, body: Callable[[sqlite3.Connection, float], _T], write: bool
    ) -> _T:
        # A reader needs only a consistent snapshot (WAL gives it without any lock).
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            # Read the clock once the lock is held: the order of the writes is then the
            # order of their times, across processes.
            result = body(conn, self._clock())
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def _run(
        self, operation: str, body: Callable[[sqlite3.Connection, float], _T], *, write: bool = True
    ) -> _T:
        return await self._thread.run(operation, lambda conn: self._transaction(conn, body, write))

    @staticmethod
    def _load(conn: sqlite3.Connection, account_id: str) -> BreakerRecord:
        row = conn.execute(
            "SELECT state, failures, opened_at, open_timeout, trips, epoch FROM breakers WHERE account_id = ?",
            (account_id,),
        ).fetchone()
        if row is None:
            return BreakerRecord()
        state, failures, opened_at, open_timeout, trips, epoch = row
        return BreakerRecord(State(state), failures, opened_at, open_timeout, trips, epoch)

    @staticmethod
    def _save(conn: sqlite3.Connection, account_id: str, rec: BreakerRecord, now: float) -> None:
        conn.execute(
            "INSERT INTO breakers (account_id, state, failures, opened_at, open_timeout, trips, epoch,"
            " changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET"
            " state = excluded.state, failures = excluded.failures, opened_at = excluded.opened_at,"
            " open_timeout = excluded.open_timeout, trips = excluded.trips, epoch = excluded.epoch,"
            " changed_at = excluded.changed_at",
            (
                account_id,
                rec.state.value,
                rec.failures,
                rec.opened_at,
                rec.open_timeout,
                rec.trips,
                rec.epoch,
                now,
            ),
        )

    @staticmethod
    def _clear_probes(conn: sqlite3.Connection, account_id: str) -> None:
        conn.execute("DELETE FROM breaker_probes WHERE account_id = ?", (account_id,))

    def _commit_result(self, conn: sqlite3.Connection, account_id: str, result: StoreResult) -> StoreResult:
        if result.verdict in (Verdict.COUNTED, Verdict.PROBE, Verdict.RESET, Verdict.FORCED):
            self._save(conn, account_id, result.record, result.now)
        # Leaving half-open (or being reset) ends every probe: their late verdicts must not count.
        if result.changed and result.record.state is not State.HALF_OPEN:
            self._clear_probes(conn, account_id)
        return result

    # --- operations ------------------------------------------------------------------------
    async def allow(self, account_id: str, params: BreakerParams, *, token: str) -> StoreResult:
        def peek(conn: sqlite3.Connection, now: float) -> StoreResult | None:
            rec = self._load(conn, account_id)
            if rec.state is State.CLOSED:
                return states.admit(rec, now=now, slots=states.NO_PROBES, params=params)
            return None

        # Nearly every call finds the circuit closed: answer those from a snapshot, without taking
        # the write lock every process contends for. (An opening committed just after the snapshot
        # orders after this admission, as it would had the call come a moment earlier.)
        admitted = await self._run("allow", peek, write=False)
        if admitted is not None:
            return admitted

        def body(conn: sqlite3.Connection, now: float) -> StoreResult:
            rec = self._load(conn, account_id)
            if rec.state is State.CLOSED:
                return states.admit(rec, now=now, slots=states.NO_PROBES, params=params)
            conn.execute(
                "DELETE FROM breaker_probes WHERE account_id = ? AND expires_at <= ?", (account_id, now)
            )
            held, earliest = conn.execute(
                "SELECT COUNT(*), MIN(expires_at) FROM breaker_probes WHERE account_id = ?", (account_id,)
            ).fetchone()
            result = states.admit(rec, now=now, slots=states.ProbeSlots(held, earliest), params=params)
            if result.verdict is Verdict.PROBE:
                conn.execute(
                    "INSERT INTO breaker_probes (account_id, token, expires_at) VALUES (?, ?, ?)",
                    (account_id, token, now + params.probe_ttl_seconds),
                )
            return self._commit_result(conn, account_id, result)

        return await self._run("allow", body)

    async def record(
        self,
        account_id: str,
        effect: BreakerEffect,
        params: BreakerParams,
        *,
        token: str | None,
        epoch: int | None,
    ) -> StoreResult:
        def body(conn: sqlite3.Connection, now: float) -> StoreResult:
            rec = self._load(conn, account_id)
            held = False
            if token is not None:
                held = (
                    conn.execute(
                        "DELETE FROM breaker_probes WHERE account_id = ? AND token = ?", (account_id, token)
                    ).rowcount
                    > 0
                )
            result = states.apply_result(
                rec, effect, probe=token is not None, probe_held=held, epoch=epoch, now=now, params=params
            )
            return self._commit_result(conn, account_id, result)

        return await self._run("record", body)

    async def reset(self, account_id: str, *, reason: str) -> StoreResult:
        def body(conn: sqlite3.Connection, now: float) -> StoreResult:
            result = states.reset(self._load(conn, account_id), now=now, reason=reason)
            self._clear_probes(conn, account_id)
            return self._commit_result(conn, account_id, result)

        return await self._run("reset", body)

    async def force_open(
        self, account_id: str, params: BreakerParams, *, reason: str, seconds: float | None
    ) -> StoreResult:
        def body(conn: sqlite3.Connection, now: float) -> StoreResult:
            rec = self._load(conn, account_id)
            result = states.force_open(rec, now=now, reason=reason, seconds=seconds, params=params)
            self._clear_probes(conn, account_id)
            return self._commit_result(conn, account_id, result)

        return await self._run("force_open", body)

    async def views(self, account_ids: Sequence[str]) -> dict[str, BreakerView]:
        ids = list(dict.fromkeys(account_ids))

        def body(conn: sqlite3.Connection, now: float) -> dict[str, BreakerView]:
            views: dict[str, BreakerView] = {}
            for account_id in ids:
                rec = self._load(conn, account_id)
                (live,) = conn.execute(
                    "SELECT COUNT(*) FROM breaker_probes WHERE account_id = ? AND expires_at > ?",
                    (account_id, now),
                ).fetchone()
                views[account_id] = BreakerView(
                    account_id=account_id,
                    state=rec.effective_state(now),
                    consecutive_failures=rec.failures,
                    opened_at=rec.opened_at if rec.state is not State.CLOSED else None,
                    open_until=rec.open_until,
                    trips=rec.trips,
                    probes_in_flight=live,
                    epoch=rec.epoch,
                )
            return views

        if not ids:
            return {}
        return await self._run("views", body, write=False)

    async def aclose(self) -> None:
        await self._thread.aclose()
