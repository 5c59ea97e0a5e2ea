"""The capacity store on Redis: every state change is one Lua script call (EVALSHA).

Time comes from the server unless a ``clock`` is injected (see :class:`StoreScripts`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, cast

import redis.asyncio as aioredis

from claude_pool.capacity._plan import AcquirePlan, Reserved, acquire_with, random_unit
from claude_pool.capacity._rules import walks
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
from claude_pool.core.backend_errors import redis_errors
from claude_pool.core.config import Strategy
from claude_pool.core.errors import InvalidInput
from claude_pool.core.redis_client import connect
from claude_pool.core.redis_keys import BUCKET_TTL_SECONDS, RedisKeys
from claude_pool.core.redis_scripts import StoreScripts

__all__ = ["RedisCapacityStore"]

_SCRIPTS = ("acquire", "settle", "renew", "calibrate", "cool_down", "view", "reclaim_expired")
_RECLAIM_BATCH = 256
_STATIC_CACHE_SIZE = 64
_US, _RS = "\x1f", "\x1e"  # unit and record separators of the packed acquire arguments


@dataclass(frozen=True)
class _PackedList:
    """A candidate list as the acquire script takes it, built once per list (see ``_static``)."""

    buckets: str
    candidates: str
    bucket_count: int
    registration: str  # the key of its registration for the walk


def _num(value: float | int | None) -> str:
    return "" if value is None else repr(float(value)) if isinstance(value, float) else str(value)


def _metric_args(snapshot: RateLimitSnapshot) -> list[str]:
    """Per metric (requests, input, output), the limit and remaining told, '' for a missing one."""
    args = []
    for metric in (snapshot.requests, snapshot.input_tokens, snapshot.output_tokens):
        args += [_num(metric.limit), _num(metric.remaining)]
    return args


def _f(raw: Any) -> float:
    return float(raw.decode() if isinstance(raw, bytes) else raw)


class RedisCapacityStore(CapacityStore):
    backend: ClassVar[str] = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "claude-pool",
        clock: Callable[[], float] | None = None,
        random: Callable[[], float] = random_unit,
        owns_client: bool = False,
        cold_start: ColdStart = "full",
    ) -> None:
        self.cold_start = cold_start
        self._cold = "1" if cold_start == "empty" else "0"
        self._keys = RedisKeys(prefix)
        self._random = random
        self._fixed_keys = [self._keys.reservations(), self._keys.lease_index(), self._keys.round_robin()]
        # by the id of the canonical tuple, which _plan keeps alive and the same while a list is
        self._static_cache: dict[int, tuple[tuple[Candidate, ...], _PackedList]] = {}
        self._scripts = StoreScripts(client, "capacity", _SCRIPTS, clock=clock, owns_client=owns_client)
        self._call = self._scripts.call

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "claude-pool",
        clock: Callable[[], float] | None = None,
        random: Callable[[], float] = random_unit,
        cold_start: ColdStart = "full",
    ) -> RedisCapacityStore:
        return cls(
            connect(url), prefix=prefix, clock=clock, random=random, owns_client=True, cold_start=cold_start
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
        packed = self._static(plan.candidates)
        # No sticky key: the strategy is not sticky (see AcquirePlan), and the script reads neither.
        sticky_key, sticky_ttl = sticky or ("", 0.0)
        k = self._keys
        keys = [*self._fixed_keys, k.sticky(sticky_key), k.fullness(), packed.registration]
        excluded = _US.join(str(c + 1) for c, ex in enumerate(plan.excluded) if ex) if any(plan.excluded) else ""
        walk = walks(plan.strategy, packed.bucket_count)
        args: list[Any] = [
            BUCKET_TTL_SECONDS, plan.strategy.value, repr(self._random()), reservation_id,
            _num(lease_ttl), _num(sticky_ttl), *plan.need, packed.buckets, packed.candidates, excluded,
            _num(plan.max_wait), self._cold, k.bucket_prefix(), k.leases_prefix(), "1" if walk else "0",
        ]  # fmt: skip
        out = await self._call("acquire", keys, args)
        chosen = int(out[0])
        refusals = [
            (int(out[j]) - 1, int(out[j + 1]), _f(out[j + 2]) if out[j + 2] not in (b"", "") else None)
            for j in range(5, len(out), 3)
        ]
        if not chosen:
            return None, 0.0, 0.0, refusals, True
        return chosen - 1, _f(out[1]), _f(out[3]), refusals, self.cold_start == "full" or int(out[4]) == 1

    def _static(self, ordered: tuple[Candidate, ...]) -> _PackedList:
        """The packed data of a candidate list, cached: callers send the same list again and again,
        and building thousands of strings per call was most of the cost at 1,000 accounts."""
        hit = self._static_cache.get(id(ordered))
        if hit is not None and hit[0] is ordered:
            return hit[1]
        numbers: dict[str, int] = {}
        bucket_recs: list[str] = []
        cand_recs: list[str] = []
        for cand in ordered:
            for text in (cand.account_id, cand.bucket_id):
                if _US in text or _RS in text:
                    raise InvalidInput("account_id/bucket_id", f"{text!r} holds a control character")
            if cand.bucket_id not in numbers:
                numbers[cand.bucket_id] = len(numbers) + 1
                lim = cand.limits
                fields = (cand.bucket_id, lim.rpm, lim.itpm, lim.otpm, lim.max_in_flight or 0)
                bucket_recs.append(_US.join(map(str, fields)))
            cand_fields = (cand.account_id, numbers[cand.bucket_id], cand.priority, cand.weight)
            cand_recs.append(_US.join(map(str, cand_fields)))
        buckets, cands = _RS.join(bucket_recs), _RS.join(cand_recs)
        digest = hashlib.blake2b(f"{buckets}{_RS}{_RS}{cands}".encode(), digest_size=16).hexdigest()
        entry = _PackedList(buckets, cands, len(bucket_recs), self._keys.candidate_list(digest))
        if len(self._static_cache) >= _STATIC_CACHE_SIZE:
            self._static_cache.pop(next(iter(self._static_cache)))
        self._static_cache[id(ordered)] = (ordered, entry)
        return entry

    async def settle(
        self,
        reservation: Reservation,
        usage: Usage | None,
        *,
        request_sent: bool = True,
        snapshot: RateLimitSnapshot | None = None,
    ) -> None:
        k = self._keys
        mode = 2 if not request_sent else (1 if usage is None else 0)
        used = (usage.input_tokens, usage.output_tokens) if usage is not None else (0, 0)
        keys = [
            k.reservations(),
            k.lease_index(),
            k.bucket(reservation.bucket_id),
            k.leases(reservation.bucket_id),
            k.fullness(),
        ]
        args: list[Any] = [BUCKET_TTL_SECONDS, reservation.reservation_id, mode, *used]
        if snapshot is not None:  # calibrated in the same step: see settle.lua
            args += [self._cold, *_metric_args(snapshot)]
        await self._call("settle", keys, args)

    async def renew(self, reservation: Reservation, lease_ttl: float = DEFAULT_LEASE_TTL) -> float | None:
        k = self._keys
        keys = [k.reservations(), k.lease_index(), k.leases(reservation.bucket_id)]
        out = await self._call("renew", keys, [reservation.reservation_id, _num(float(lease_ttl))])
        return None if out in (0, b"0", "0") else _f(out)

    async def calibrate(self, bucket_id: str, snapshot: RateLimitSnapshot) -> None:
        k = self._keys
        keys = [k.bucket(bucket_id), k.leases(bucket_id), k.reservations(), k.fullness()]
        await self._call("calibrate", keys, [BUCKET_TTL_SECONDS, self._cold, *_metric_args(snapshot)])

    async def cool_down(self, bucket_id: str, until: float) -> None:
        await self._call(
            "cool_down",
            [self._keys.bucket(bucket_id), self._keys.fullness()],
            [BUCKET_TTL_SECONDS, repr(float(until))],
        )

    async def view(self, candidates: Sequence[Candidate]) -> list[BucketView]:
        bucket_ids: dict[str, BucketLimits] = {}
        for cand in candidates:
            bucket_ids.setdefault(cand.bucket_id, cand.limits)
        keys: list[str] = []
        args: list[Any] = [len(bucket_ids), self._cold]
        for bucket_id, lim in bucket_ids.items():
            keys += [self._keys.bucket(bucket_id), self._keys.leases(bucket_id)]
            args += [lim.rpm, lim.itpm, lim.otpm]
        out = await self._call("view", keys, args)
        now = _f(out[0])
        per_bucket: dict[str, BucketView] = {}
        for n, (bucket_id, lim) in enumerate(bucket_ids.items()):
            row = out[1 + 9 * n : 10 + 9 * n]
            cooldown = _f(row[6])
            per_bucket[bucket_id] = BucketView(
                account_id="",
                bucket_id=bucket_id,
                limits=BucketLimits(
                    round(_f(row[3])), round(_f(row[4])), round(_f(row[5])), lim.max_in_flight
                ),
                # what is left to spend now: a level below zero is the queue of reservations made ahead
                requests=max(0.0, _f(row[0])),
                input_tokens=max(0.0, _f(row[1])),
                output_tokens=max(0.0, _f(row[2])),
                cooldown_until=cooldown if cooldown > now else None,
                in_flight=int(row[7]),
                observed_at=now,
                levels_known=self.cold_start == "full" or int(row[8]) == 1,
            )
        return [_for_account(per_bucket[c.bucket_id], c.account_id) for c in candidates]

    async def reclaim_expired(self) -> int:
        k = self._keys
        total = 0
        for _ in range(10_000):  # bounded: each pass removes its batch from the index
            with redis_errors("capacity reclaim_expired"):
                now = await self._scripts.now()
                # members only (no scores): reservation ids
                ids = cast(
                    "list[bytes | str]",
                    await self._scripts.client.zrangebyscore(
                        k.lease_index(), "-inf", now, start=0, num=_RECLAIM_BATCH
                    ),
                )
                records = await self._scripts.client.hmget(k.reservations(), ids) if ids else []
            if not ids:
                return total
            buckets: dict[str, int] = {}
            args: list[Any] = [BUCKET_TTL_SECONDS, len(ids)]
            for rid, raw in zip(ids, records, strict=True):
                b = 0
                if raw is not None:
                    bucket_id = json.loads(raw)["b"]
                    b = buckets.setdefault(bucket_id, len(buckets) + 1)
                args += [rid, b]
            keys = [k.reservations(), k.lease_index(), k.fullness()]
            for bucket_id in buckets:
                keys += [k.bucket(bucket_id), k.leases(bucket_id)]
            total += int(await self._call("reclaim_expired", keys, args))
            if len(ids) < _RECLAIM_BATCH:
                return total
        return total

    async def aclose(self) -> None:
        await self._scripts.aclose()


def _for_account(view: BucketView, account_id: str) -> BucketView:
    return replace(view, account_id=account_id)
