"""The capacity store without a server: a SQLite file, correct across the processes of one machine.

SQLite blocks while it waits for another process's write lock, so every operation runs on one
dedicated thread of this store: the event loop never waits on a lock, and the connection is only
ever used from the thread that opened it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

from claude_pool.capacity import _rules as rules
from claude_pool.capacity._plan import AcquirePlan, Reserved, acquire_with, random_unit
from claude_pool.capacity._sqlite_core import SqliteCore
from claude_pool.capacity.model import (
    BucketLimits,
    BucketView,
    Candidate,
    Demand,
    Reservation,
    Selection,
    Usage,
)
from claude_pool.capacity.ratelimit import RateLimitSnapshot
from claude_pool.capacity.store import DEFAULT_LEASE_TTL, DEFAULT_STICKY_TTL, CapacityStore, ColdStart
from claude_pool.core.config import Strategy
from claude_pool.core.sqlite_thread import SqliteThread

__all__ = ["EmbeddedCapacityStore"]


class EmbeddedCapacityStore(CapacityStore):
    backend: ClassVar[str] = "embedded"

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = random_unit,
        busy_timeout_seconds: float = 30.0,
        cold_start: ColdStart = "full",
    ) -> None:
        self.path = Path(path)
        self.cold_start = cold_start
        self._clock = clock
        self._random = random
        self._busy_timeout = busy_timeout_seconds
        self._thread = SqliteThread(
            "capacity", self.path, self._open, SqliteCore.close, thread_name="claude-pool-capacity"
        )
        self._run = self._thread.run

    def _open(self) -> SqliteCore:
        return SqliteCore(
            self.path, clock=self._clock, busy_timeout=self._busy_timeout, cold_empty=self.cold_start == "empty"
        )

    async def acquire(
        self,
        candidates: Sequence[Candidate],
        demand: Demand,
        *,
        strategy: Strategy | str = Strategy.LEAST_LOADED,
        sticky_key: str | None = None,
        sticky_ttl: float = DEFAULT_STICKY_TTL,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        exclude: Collection[str] = (),
        max_wait: float = 0.0,
    ) -> Selection:
        args = (candidates, demand, strategy, sticky_key, sticky_ttl, lease_ttl, exclude, max_wait)
        return await acquire_with(self._reserve, *args)

    async def _reserve(
        self, plan: AcquirePlan, reservation_id: str, lease_ttl: float, sticky: tuple[str, float] | None
    ) -> Reserved:
        r = self._random()
        return await self._run(
            "acquire", lambda core: core.acquire(plan, reservation_id, r, lease_ttl, sticky)
        )

    async def settle(
        self,
        reservation: Reservation,
        usage: Usage | None,
        *,
        request_sent: bool = True,
        snapshot: RateLimitSnapshot | None = None,
    ) -> None:
        used = (float(usage.input_tokens), float(usage.output_tokens)) if usage is not None else None

        rid, bucket_id = reservation.reservation_id, reservation.bucket_id
        await self._run("settle", lambda core: core.settle(rid, bucket_id, used, request_sent, snapshot))

    async def renew(self, reservation: Reservation, lease_ttl: float = DEFAULT_LEASE_TTL) -> float | None:
        rid = reservation.reservation_id
        return await self._run("renew", lambda core: core.renew(rid, float(lease_ttl)))

    async def calibrate(self, bucket_id: str, snapshot: RateLimitSnapshot) -> None:
        await self._run("calibrate", lambda core: core.calibrate(bucket_id, snapshot))

    async def cool_down(self, bucket_id: str, until: float) -> None:
        await self._run("cool_down", lambda core: core.cool_down(bucket_id, float(until)))

    async def view(self, candidates: Sequence[Candidate]) -> list[BucketView]:
        bucket_ids = list(dict.fromkeys(c.bucket_id for c in candidates))
        now, states = await self._run("view", lambda core: core.view(bucket_ids))
        cold = self.cold_start == "empty"
        return [_view(c, now, *states[c.bucket_id], cold_empty=cold) for c in candidates]

    async def reclaim_expired(self) -> int:
        return await self._run("reclaim_expired", lambda core: core.reclaim_expired())

    async def aclose(self) -> None:
        await self._thread.aclose()


def _view(
    cand: Candidate, now: float, state: rules.BucketState, in_flight: int, *, cold_empty: bool
) -> BucketView:
    caps: list[Any] = rules.caps_of(cand.limits, state)
    levels: list[Any] = rules.refill(state, caps, now, cold_empty=cold_empty)
    return BucketView(
        account_id=cand.account_id,
        bucket_id=cand.bucket_id,
        limits=BucketLimits(round(caps[0]), round(caps[1]), round(caps[2]), cand.limits.max_in_flight),
        # what is left to spend now: a level below zero is the queue of reservations made ahead
        requests=max(0.0, levels[0]),
        input_tokens=max(0.0, levels[1]),
        output_tokens=max(0.0, levels[2]),
        cooldown_until=state.cooldown_until if state.cooldown_until > now else None,
        in_flight=in_flight,
        observed_at=now,
        levels_known=not cold_empty or any(u is not None for u in state.upstream or ()),
    )
