"""The embedded store's synchronous core: one SQLite file shared by the processes of one machine.

Every operation is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two
processes never both read a level and both spend it); WAL lets readers proceed meanwhile, and the busy
timeout makes a writer wait for the lock instead of failing. The rules are those of rules.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from claude_pool.capacity import _rules as rules
from claude_pool.capacity._plan import AcquirePlan, CanonicalList
from claude_pool.capacity._rules import BucketState, Entry
from claude_pool.capacity.ratelimit import RateLimitSnapshot
from claude_pool.core.config import Strategy
from claude_pool.core.redis_keys import BUCKET_TTL_SECONDS  # the same idle lifetime as on Redis
from claude_pool.core.sqlite_wal import use_wal

__all__ = ["SqliteCore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    bucket_id TEXT PRIMARY KEY, r REAL, i REAL, o REAL, t REAL NOT NULL DEFAULT 0,
    lr REAL, li REAL, lo REAL, ur REAL, ui REAL, uo REAL, cd REAL NOT NULL DEFAULT 0,
    full_at REAL NOT NULL DEFAULT 0, ended_at REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS leases (
    reservation_id TEXT PRIMARY KEY, bucket_id TEXT NOT NULL, account_id TEXT NOT NULL,
    r REAL NOT NULL, i REAL NOT NULL, o REAL NOT NULL, expires_at REAL NOT NULL,
    sends_at REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS leases_by_bucket ON leases (bucket_id, expires_at);
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_at);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS registered_lists (digest TEXT PRIMARY KEY);
"""
# The fullness index of acquire.lua's walk: buckets in order of rules.full_again_at, then of id (the
# order of a Redis sorted set's equal scores).
_FULLNESS_INDEX = "CREATE INDEX IF NOT EXISTS buckets_by_fullness ON buckets (full_at, bucket_id)"
_COLUMNS = "bucket_id, r, i, o, t, lr, li, lo, ur, ui, uo, cd"
_CHUNK = 500  # stay far below SQLite's bound on variables per statement

_Opt = float | None
# A buckets row, column by column as in _COLUMNS: only t and cd are NOT NULL.
_BucketRow = tuple[str, _Opt, _Opt, _Opt, float, _Opt, _Opt, _Opt, _Opt, _Opt, _Opt, float]


# One bucket as acquire assesses it: caps, levels, refusal code (0: admitted), until, score, wait.
_Assessed = tuple[list[float], list[float], int, float | None, float, float]


def _sort_out(
    plan: AcquirePlan, assessed: Mapping[int, _Assessed]
) -> tuple[list[Entry], list[int], list[tuple[int, int, float | None]]]:
    """The eligible candidates (as entries for rules.choose, and their numbers in the plan) and
    the refusals of the others, in the plan's order."""
    entries: list[Entry] = []
    numbers: list[int] = []
    refusals: list[tuple[int, int, float | None]] = []
    for c, cand in enumerate(plan.candidates):
        _caps, _levels, code, until, score, wait = assessed[plan.bucket_of[c]]
        if plan.excluded[c]:
            refusals.append((c, 7, None))
        elif code:
            refusals.append((c, code, until))
        else:
            entries.append(Entry(cand.account_id, score, cand.priority, cand.weight, wait))
            numbers.append(c)
    return entries, numbers, refusals


def _state(row: _BucketRow | None) -> BucketState:
    if row is None:
        return BucketState()
    return BucketState(
        levels=list(row[1:4]),
        updated_at=row[4],
        caps=list(row[5:8]),
        upstream=list(row[8:11]),
        cooldown_until=row[11],
    )


_Save = tuple[str, list[float], list[float]]  # a first sight to save: bucket id, levels, caps
_Walked = tuple[list[Entry], list[int], dict[int, _Assessed]]


class _Walk:
    """Where a walk stands: the candidates read (entries, their numbers, their buckets), the best
    ready score and how many ready candidates tie for it."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.numbers: list[int] = []
        self.assessed: dict[int, _Assessed] = {}
        self.best: float | None = None
        self.ties = 0
        self.visited: set[str] = set()  # a refund met on the way (an expired lease) moves a bucket up
        self.misplaced: list[tuple[float, str]] = []  # buckets fuller-looking in the index than they are
        self.first_sights: list[_Save] = []

    def over(self, bound: float) -> bool:
        return bound < cast(float, self.best) - rules.TIE_EPSILON or self.ties >= rules.MAX_TIES

    def count(self, score: float, ready: int) -> None:
        if ready == 0:
            return
        if self.best is None or score > self.best + rules.TIE_EPSILON:
            self.best = score
            self.ties = sum(1 for e in self.entries if e.wait <= 0 and e.score >= score - rules.TIE_EPSILON)
        elif score >= self.best - rules.TIE_EPSILON:
            self.ties += ready


class SqliteCore:
    def __init__(
        self, path: Path, *, clock: Callable[[], float], busy_timeout: float, cold_empty: bool = False
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.cold_empty = cold_empty
        self.db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        use_wal(self.db, timeout=busy_timeout)
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        with self.transaction():
            # not executescript(): it would COMMIT first and run outside the lock
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self.db.execute(statement)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(leases)")}
            if "sends_at" not in columns:  # a store file written before reservations could be queued
                self.db.execute("ALTER TABLE leases ADD COLUMN sends_at REAL NOT NULL DEFAULT 0")
            bucket_columns = {row[1] for row in self.db.execute("PRAGMA table_info(buckets)")}
            if "full_at" not in bucket_columns:
                # a store file written before the walk: every bucket looks full, the walk corrects it
                self.db.execute("ALTER TABLE buckets ADD COLUMN full_at REAL NOT NULL DEFAULT 0")
            if "ended_at" not in bucket_columns:
                # a store file written before raising calibrations: calls may have ended just now
                self.db.execute("ALTER TABLE buckets ADD COLUMN ended_at REAL NOT NULL DEFAULT 0")
                self.db.execute("UPDATE buckets SET ended_at = ?", (self.clock(),))
            self.db.execute(_FULLNESS_INDEX)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[float]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.clock()  # read the clock once the lock is held: times then never run backwards
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- buckets -------------------------------------------------------------------------------
    def load(self, bucket_ids: Sequence[str]) -> dict[str, BucketState]:
        found: dict[str, BucketState] = {}
        for start in range(0, len(bucket_ids), _CHUNK):
            chunk = bucket_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT {_COLUMNS} FROM buckets WHERE bucket_id IN ({marks})", chunk):  # noqa: S608
                found[row[0]] = _state(row)
        return {b: found.get(b, BucketState()) for b in bucket_ids}

    def save(
        self, bucket_id: str, levels: Sequence[float | None], caps: Sequence[float | None], now: float
    ) -> None:
        # COALESCE: like the Lua HSET, an unknown value never erases a known one; the cooldown is
        # the row's (rules.full_again_at takes the later of the two)
        self.db.execute(
            "INSERT INTO buckets (bucket_id, r, i, o, t, lr, li, lo, full_at) VALUES (?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (bucket_id) DO UPDATE SET r=COALESCE(excluded.r, r), i=COALESCE(excluded.i, i), "
            "o=COALESCE(excluded.o, o), t=excluded.t, lr=COALESCE(excluded.lr, lr), "
            "li=COALESCE(excluded.li, li), lo=COALESCE(excluded.lo, lo), full_at=MAX(excluded.full_at, cd)",
            (bucket_id, *levels, now, *caps, rules.full_again_at(levels, caps, now, 0.0)),
        )

    def apply_refund(self, bucket_id: str, delta: rules.Triple, now: float) -> None:
        state = self.load([bucket_id])[bucket_id]
        caps = rules.caps_of(None, state)
        levels = rules.refill(state, caps, now)
        # refill leaves a level only where there is a cap
        out = [
            None if lv is None else rules.clamp_add(lv, delta[m], cast(float, caps[m]))
            for m, lv in enumerate(levels)
        ]
        self.save(bucket_id, out, caps, now)

    # --- leases --------------------------------------------------------------------------------
    def drop_expired(self, now: float, bucket_id: str | None = None) -> int:
        if bucket_id is None:
            rows = self.db.execute(
                "SELECT reservation_id, bucket_id, o FROM leases WHERE expires_at <= ?", (now,)
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT reservation_id, bucket_id, o FROM leases WHERE bucket_id = ? AND expires_at <= ?",
                (bucket_id, now),
            ).fetchall()
        for rid, bid, out in rows:
            self.db.execute("DELETE FROM leases WHERE reservation_id = ?", (rid,))
            self.apply_refund(bid, (0.0, 0.0, out), now)
            self.mark_call_ended(bid, now)
        return len(rows)

    def in_flight(self, bucket_id: str) -> tuple[int, float | None]:
        count, earliest = self.db.execute(
            "SELECT COUNT(*), MIN(expires_at) FROM leases WHERE bucket_id = ?", (bucket_id,)
        ).fetchone()
        return count, earliest

    # --- cursors (round robin, sticky) ---------------------------------------------------------
    def cursor(self, name: str, now: float) -> str | None:
        row = self.db.execute(
            "SELECT value FROM cursors WHERE name = ? AND expires_at > ?", (name, now)
        ).fetchone()
        return row[0] if row else None

    def set_cursor(self, name: str, value: str, expires_at: float) -> None:
        self.db.execute(
            "INSERT INTO cursors VALUES (?,?,?) ON CONFLICT (name) DO UPDATE SET value=excluded.value, "
            "expires_at=excluded.expires_at",
            (name, value, expires_at),
        )

    # --- operations ----------------------------------------------------------------------------
    def acquire(
        self, plan: AcquirePlan, rid: str, r: float, lease_ttl: float, sticky: tuple[str, float] | None
    ) -> tuple[int | None, float, float, list[tuple[int, int, float | None]], bool]:
        with self.transaction() as now:
            walked = self._walk(plan, now) if rules.walks(plan.strategy, len(plan.bucket_ids)) else None
            if walked is not None:  # a walk's refusals would be of the buckets it read only
                entries, numbers, assessed = walked
                refusals: list[tuple[int, int, float | None]] = []
            else:
                assessed = dict(enumerate(self._assess(plan, now)))
                entries, numbers, refusals = _sort_out(plan, assessed)
            if not entries:
                return None, 0.0, 0.0, refusals, True
            rr = self.cursor("rr", now) if plan.strategy is Strategy.ROUND_ROBIN else None
            mapped = (
                self.cursor("sticky:" + sticky[0], now)
                if sticky and plan.strategy is Strategy.STICKY
                else None
            )
            chosen = numbers[
                rules.choose(plan.strategy, entries, r, last_round_robin=rr, sticky_account=mapped)
            ]
            bucket = assessed[plan.bucket_of[chosen]]
            expiry = self._reserve(plan, chosen, bucket, rid, lease_ttl, now)
            cand = plan.candidates[chosen]
            if plan.strategy is Strategy.ROUND_ROBIN:
                self.set_cursor("rr", cand.account_id, now + BUCKET_TTL_SECONDS)
            elif plan.strategy is Strategy.STICKY and sticky:
                self.set_cursor("sticky:" + sticky[0], cand.account_id, now + sticky[1])
            return chosen, expiry, bucket[5], refusals, self._levels_known(cand.bucket_id)

    def _levels_known(self, bucket_id: str) -> bool:
        """False while a cold store's bucket has not been calibrated by upstream's headers."""
        if not self.cold_empty:
            return True
        row = self.db.execute("SELECT ur, ui, uo FROM buckets WHERE bucket_id = ?", (bucket_id,)).fetchone()
        return row is not None and any(limit is not None for limit in row)

    def _assess(self, plan: AcquirePlan, now: float) -> list[_Assessed]:
        """Each bucket of the plan, in order: its caps and levels now, and whether it can serve."""
        for bucket_id, lim in zip(plan.bucket_ids, plan.bucket_limits, strict=True):
            if lim.max_in_flight:  # only an in-flight cap can block for ever (see acquire.lua)
                self.drop_expired(now, bucket_id)
        states = self.load(list(plan.bucket_ids))
        assessed = [
            self._assess_one(plan, b, states[b], now, first_sights=None) for b in plan.bucket_ids
        ]
        return assessed

    def _assess_one(
        self, plan: AcquirePlan, bucket_id: str, state: BucketState, now: float, first_sights: list[_Save] | None
    ) -> _Assessed:
        """One bucket of the plan: its caps and levels now, and whether it can serve. A cold bucket
        seen for the first time starts its refill now, admitted or not: saved at once, or added to
        ``first_sights`` when a walk must not reorder the index under its feet."""
        lim = plan.bucket_limits[plan.listed.bucket_number[bucket_id]]
        # A plan's limits are all configured (positive), so no cap and no level is unknown.
        caps = cast(list[float], rules.caps_of(lim, state))
        levels = cast(list[float], rules.refill(state, caps, now, cold_empty=self.cold_empty))
        if self.cold_empty and any(lv is None for lv in state.levels or (None,)):
            if first_sights is None:
                self.save(bucket_id, levels, caps, now)
            else:
                first_sights.append((bucket_id, levels, caps))
        count, earliest = self.in_flight(bucket_id) if lim.max_in_flight else (0, None)
        code, until, wait = rules.admission(
            levels, caps, plan.need, now, state.cooldown_until, count, lim.max_in_flight, earliest,
            plan.max_wait,
        )  # fmt: skip
        score = rules.headroom_after(levels, caps, plan.need) if code == 0 else 0.0
        return caps, levels, code, until, score, wait

    # --- the walk (acquire.lua's twin, step for step) -------------------------------------------
    def _register(self, listed: CanonicalList, now: float) -> None:
        """Every bucket of the list in the fullness index, once: one never seen is full since ever,
        or, cold, empty now (a row without levels is a bucket never seen)."""
        if self.db.execute("SELECT 1 FROM registered_lists WHERE digest = ?", (listed.digest,)).fetchone():
            return
        unseen = now + rules.SECONDS_PER_MINUTE if self.cold_empty else 0.0
        self.db.executemany(
            "INSERT OR IGNORE INTO buckets (bucket_id, full_at) VALUES (?, ?)",
            [(b, unseen) for b in listed.bucket_ids],
        )
        self.db.execute("INSERT INTO registered_lists VALUES (?)", (listed.digest,))

    def _walk(self, plan: AcquirePlan, now: float) -> _Walked | None:
        """Least-loaded without reading every bucket (acquire.lua's walk): buckets in index order,
        until none further can beat, or past MAX_TIES tie, the best found; None when no candidate
        could send at once (a scan then says when each could, and why not)."""
        self._register(plan.listed, now)
        walk = _Walk()
        offset, found = 0, None
        while found is None:
            rows = self.db.execute(
                f"SELECT {_COLUMNS}, full_at FROM buckets ORDER BY full_at, bucket_id LIMIT ? OFFSET ?",  # noqa: S608
                (rules.WALK_BATCH, offset),
            ).fetchall()
            if not rows:
                found = walk.best is not None
            for row in rows:
                if walk.best is not None and walk.over(rules.fullness_bound(row[-1], now)):
                    found = True
                    break
                if row[0] not in walk.visited and row[0] in plan.listed.bucket_number:
                    self._walk_bucket(plan, walk, row, now)
                walk.visited.add(row[0])
            offset += rules.WALK_BATCH
        for full_at, bucket_id in walk.misplaced:
            self.db.execute("UPDATE buckets SET full_at = ? WHERE bucket_id = ?", (full_at, bucket_id))
        if not found:
            return None
        for bucket_id, levels, caps in walk.first_sights:
            self.save(bucket_id, levels, caps, now)
        return walk.entries, walk.numbers, walk.assessed

    def _walk_bucket(self, plan: AcquirePlan, walk: _Walk, row: tuple[Any, ...], now: float) -> None:
        bucket_id = row[0]
        b = plan.listed.bucket_number[bucket_id]
        if plan.bucket_limits[b].max_in_flight:
            self.drop_expired(now, bucket_id)
            state = self.load([bucket_id])[bucket_id]
        else:
            state = _state(cast(_BucketRow, row[:-1]))
        bucket = walk.assessed[b] = self._assess_one(plan, bucket_id, state, now, walk.first_sights)
        caps, levels, code, _until, score, wait = bucket
        due = rules.full_again_at(levels, caps, now, state.cooldown_until)
        if due > row[-1] + 1e-6:
            walk.misplaced.append((due, bucket_id))
        ready = 0
        for c in plan.listed.members[b]:
            if not plan.excluded[c] and code == 0:
                cand = plan.candidates[c]
                walk.entries.append(Entry(cand.account_id, score, cand.priority, cand.weight, wait))
                walk.numbers.append(c)
                ready += wait <= 0
        walk.count(score, ready)

    def _reserve(
        self, plan: AcquirePlan, chosen: int, bucket: _Assessed, rid: str, lease_ttl: float, now: float
    ) -> float:
        """Spend the demand on the chosen candidate's bucket and hold its lease; the lease's expiry."""
        cand = plan.candidates[chosen]
        caps, levels = bucket[0], bucket[1]
        self.save(cand.bucket_id, [lv - plan.need[m] for m, lv in enumerate(levels)], caps, now)
        expiry = now + bucket[5] + lease_ttl  # a queued call's lease starts when it may send
        self.db.execute(
            "INSERT INTO leases (reservation_id, bucket_id, account_id, r, i, o, expires_at, sends_at) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (rid, cand.bucket_id, cand.account_id, *plan.need, expiry, now + bucket[5]),
        )
        return expiry

    def settle(
        self, rid: str, bucket_id: str, used: tuple[float, float] | None, sent: bool,
        snapshot: RateLimitSnapshot | None = None,
    ) -> None:
        """Release the lease (see settle.lua) and, given the answer's headers, calibrate the bucket
        in the same transaction, raising it only when ``rules.may_raise``."""
        with self.transaction() as now:
            row = self.db.execute(
                "SELECT r, i, o, expires_at, sends_at FROM leases WHERE reservation_id = ?", (rid,)
            ).fetchone()
            may_raise = False
            if row is not None:  # else settled or reclaimed already
                r, i, o, expires_at, sends_at = row
                expired = now >= expires_at
                may_raise = snapshot is not None and not expired and rules.may_raise(sends_at, self.ended_at(bucket_id))
                self.db.execute("DELETE FROM leases WHERE reservation_id = ?", (rid,))
                self.apply_refund(bucket_id, rules.settle_refund((r, i, o), used, sent=sent, expired=expired), now)
                if sent or expired:
                    self.mark_call_ended(bucket_id, now)
            if snapshot is not None:
                self.calibrate_in(bucket_id, snapshot, now, may_raise=may_raise)

    def ended_at(self, bucket_id: str) -> float:
        row = self.db.execute("SELECT ended_at FROM buckets WHERE bucket_id = ?", (bucket_id,)).fetchone()
        return 0.0 if row is None else float(row[0])

    def mark_call_ended(self, bucket_id: str, now: float) -> None:
        """A lease of a call that may have reached upstream left the books (see ``rules.may_raise``)."""
        self.db.execute("UPDATE buckets SET ended_at = ? WHERE bucket_id = ?", (now, bucket_id))

    def renew(self, rid: str, lease_ttl: float) -> float | None:
        with self.transaction() as now:
            row = self.db.execute("SELECT expires_at FROM leases WHERE reservation_id = ?", (rid,)).fetchone()
            if row is None or now >= row[0]:
                return None  # settled, reclaimed, or expired: never revived
            expiry = max(float(row[0]), now + lease_ttl)
            self.db.execute("UPDATE leases SET expires_at = ? WHERE reservation_id = ?", (expiry, rid))
            return expiry

    def calibrate(self, bucket_id: str, snapshot: RateLimitSnapshot) -> None:
        with self.transaction() as now:
            self.calibrate_in(bucket_id, snapshot, now, may_raise=False)

    def calibrate_in(self, bucket_id: str, snapshot: RateLimitSnapshot, now: float, *, may_raise: bool) -> None:
        """calibrate_bucket in _capacity_lib.lua, within a transaction."""
        state = self.load([bucket_id])[bucket_id]
        caps = rules.caps_of(None, state)
        levels = rules.refill(state, caps, now, cold_empty=self.cold_empty)
        upstream = list(state.upstream or [None, None, None])
        outstanding = self.outstanding(bucket_id, now)
        unsent = self.outstanding(bucket_id, now, unsent_only=True)
        for m, metric in enumerate((snapshot.requests, snapshot.input_tokens, snapshot.output_tokens)):
            first = self.cold_empty and upstream[m] is None
            if metric.limit is not None and metric.limit > 0:
                caps[m] = upstream[m] = float(metric.limit)
                level = levels[m]
                levels[m] = caps[m] if level is None else min(level, metric.limit)
            lv, cap = levels[m], caps[m]
            if first and metric.limit and metric.remaining is not None and cap is not None:
                remaining = metric.remaining - rules.REMAINING_ROUNDING[m]
                levels[m] = rules.first_calibration(remaining, outstanding[m], cap)
            elif metric.remaining is not None and lv is not None and cap is not None:
                level = rules.lowered(lv, float(metric.remaining), unsent[m])
                if may_raise:
                    rounding = rules.REMAINING_ROUNDING[m]
                    level = rules.raised(level, float(metric.remaining), rounding, outstanding[m], cap)
                levels[m] = level
        self.save(bucket_id, levels, caps, now)
        self.db.execute(
            "UPDATE buckets SET ur = ?, ui = ?, uo = ? WHERE bucket_id = ?", (*upstream, bucket_id)
        )

    def outstanding(self, bucket_id: str, now: float, *, unsent_only: bool = False) -> tuple[float, float, float]:
        """What the live leases of a bucket hold reserved, per metric; ``unsent_only``: only those
        queued to send later (upstream cannot have counted them yet)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(r), 0), COALESCE(SUM(i), 0), COALESCE(SUM(o), 0) FROM leases "
            "WHERE bucket_id = ? AND expires_at > ? AND sends_at > ?",
            (bucket_id, now, now if unsent_only else float("-inf")),
        ).fetchone()
        return float(row[0]), float(row[1]), float(row[2])

    def cool_down(self, bucket_id: str, until: float) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO buckets (bucket_id, cd, full_at) VALUES (?, ?, ?) ON CONFLICT (bucket_id) "
                "DO UPDATE SET cd = MAX(cd, excluded.cd), full_at = MAX(full_at, excluded.cd)",
                (bucket_id, until, until),
            )

    def view(self, bucket_ids: Sequence[str]) -> tuple[float, dict[str, tuple[BucketState, int]]]:
        with self.transaction() as now:
            states = self.load(list(bucket_ids))
            counts = {
                b: self.db.execute(
                    "SELECT COUNT(*) FROM leases WHERE bucket_id = ? AND expires_at > ?", (b, now)
                ).fetchone()[0]
                for b in bucket_ids
            }
        return now, {b: (states[b], counts[b]) for b in bucket_ids}

    def reclaim_expired(self) -> int:
        with self.transaction() as now:
            self.db.execute("DELETE FROM cursors WHERE expires_at <= ?", (now,))
            return self.drop_expired(now)
