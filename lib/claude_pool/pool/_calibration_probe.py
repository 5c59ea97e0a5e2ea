"""A tiny call that calibrates a cold bucket for the requests held back by its guess.

With ``capacity.coldStart: empty`` a bucket nobody has calibrated admits only what refill has
brought since the store first saw it: safe on a key another client drained, but a large request on
a rested key would wait for refill to bring its whole input (30,000 tokens on a 40,000 ITPM key:
45 s, past the queue's bound, so refused) unless a smaller call's answer calibrated the bucket
first. So the worker makes that smaller call itself, for each of an organization's accounts whose
bucket is still a guess, at the organization's first request and whenever a request is refused:
one request, a one-character prompt, ``max_tokens`` 1, its capacity reserved like any call's (on a
drained key it waits for refill too, so it overruns nothing). Its answer's ``anthropic-ratelimit-*``
headers calibrate the bucket, which wakes the requests queued on the guess (``GuessedPlaces``); one
that was refused is admitted when it asks again. One probe per bucket at a time per worker, none for
a bucket seen calibrated or probed in the last minute; each costs one request and a few tokens.

A probe is made only for a request whose tokens the guess holds back (``probe_helps``): for one that
needs little more than a request's share of the token limits, its own call would be sent as soon as
a probe (both wait for one request of refill) and calibrates the bucket as well; a probe would only
take a place that a caller's request could have had.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import anthropic

from claude_pool.capacity import BucketLimits, CapacityStore, Demand, RateLimitSnapshot, Reservation
from claude_pool.core.cancelling import cancel_and_wait
from claude_pool.core.errors import BackendUnavailable
from claude_pool.core.logs import log_event
from claude_pool.pool._attempt import usage_of
from claude_pool.pool.directory import PoolAccount
from claude_pool.pool.upstream import UpstreamClient

__all__ = ["CalibrationProbes", "probe_helps"]

logger = logging.getLogger("claude_pool.pool")

PROBE_DEMAND = Demand(input_tokens=16, output_tokens=1)
# A probe goes only where nothing is queued ahead of it (a request queued there calibrates the
# bucket as soon as it is answered): it waits at most the refill of one and a half requests.
PROBE_WAIT_IN_REQUESTS = 1.5
PROBE_TIMEOUT_SECONDS = 30.0
# A bucket seen calibrated (or probed) this recently is not looked at again: a refusal under load
# then costs no extra store round, and a bucket whose answers carry no headers is not probed again
# and again.
SETTLED_FOR_SECONDS = 60.0


def probe_helps(demand: Demand, limits: BucketLimits) -> bool:
    """Whether a probe would calibrate a cold bucket sooner than ``demand``'s own call: its tokens
    take the empty guess longer to refill than the probe's wait (one and a half requests' refill)."""
    share = PROBE_WAIT_IN_REQUESTS / limits.rpm
    return demand.input_tokens > share * limits.itpm or demand.output_tokens > share * limits.otpm


class CalibrationProbes:
    def __init__(
        self,
        capacity: CapacityStore,
        upstream: UpstreamClient,
        decrypt: Callable[[PoolAccount], str],
        on_calibrated: Callable[[str], None],
    ) -> None:
        self._capacity = capacity
        self._upstream = upstream
        self._decrypt = decrypt
        self._on_calibrated = on_calibrated
        self._running: dict[str, asyncio.Task[None]] = {}  # per bucket
        self._looks: dict[str, asyncio.Task[None]] = {}  # per organization
        # When each bucket was last seen calibrated or probed: not looked at again for a while.
        self._settled_at: dict[str, float] = {}

    def look(self, key: str, accounts: list[PoolAccount], model: str) -> None:
        """In the background, probe those of ``accounts`` whose bucket is still a guess (their
        views say so), unless they were seen calibrated or probed in the last minute; ``key``: one
        look at a time per organization."""
        now = time.monotonic()
        unsure = [a for a in accounts if not self._settled_recently(a.candidate.bucket_id, now)]
        looking = self._looks.get(key)
        if unsure and (looking is None or looking.done()):
            self._looks[key] = asyncio.create_task(self._look(unsure, model))

    async def _look(self, accounts: list[PoolAccount], model: str) -> None:
        try:
            views = await self._capacity.view([a.candidate for a in accounts])
        except BackendUnavailable:
            return  # the next refusal looks again
        now = time.monotonic()
        for account, view in zip(accounts, views, strict=True):
            self._settled_at[view.bucket_id] = now
            if not view.levels_known:
                self._start(account, model)

    def _settled_recently(self, bucket_id: str, now: float) -> bool:
        seen = self._settled_at.get(bucket_id)
        return seen is not None and now - seen < SETTLED_FOR_SECONDS

    def _start(self, account: PoolAccount, model: str) -> None:
        bucket_id = account.candidate.bucket_id
        running = self._running.get(bucket_id)
        if running is None or running.done():
            self._running[bucket_id] = asyncio.create_task(self._probe(account, model))

    async def _probe(self, account: PoolAccount, model: str) -> None:
        try:
            candidate = account.candidate
            max_wait = PROBE_WAIT_IN_REQUESTS * 60.0 / candidate.limits.rpm
            selection = await self._capacity.acquire([candidate], PROBE_DEMAND, max_wait=max_wait)
            if selection.reservation is not None:
                await self._call(account, model, selection.reservation)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a probe is a best effort: the requests' own waits still end
            log_event(logger, logging.WARNING, "calibration probe failed", account_id=account.id,
                      error=f"{type(exc).__name__}: {exc}")

    async def _call(self, account: PoolAccount, model: str, reservation: Reservation) -> None:
        await asyncio.sleep(reservation.wait_seconds)
        body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "."}]}
        try:
            reply = await self._upstream.create(self._decrypt(account), body, timeout=PROBE_TIMEOUT_SECONDS)
            usage, headers, status = usage_of(reply), reply.headers, 200
        except anthropic.APIStatusError as exc:  # its headers calibrate as well as an answer's
            usage, headers, status = None, exc.response.headers, exc.status_code
        except BaseException:
            await asyncio.shield(self._capacity.settle(reservation, None))  # may have been counted
            raise
        snapshot = RateLimitSnapshot.from_headers(headers)
        await self._capacity.settle(reservation, usage, snapshot=snapshot)
        log_event(logger, logging.INFO, "calibration probe answered", account_id=account.id, status=status)
        self._calibrated(reservation.bucket_id, snapshot)

    def _calibrated(self, bucket_id: str, snapshot: RateLimitSnapshot) -> None:
        self._settled_at[bucket_id] = time.monotonic()
        if not snapshot.is_empty:
            self._on_calibrated(bucket_id)

    async def aclose(self) -> None:
        await cancel_and_wait(*self._looks.values(), *self._running.values())
        self._looks.clear()
        self._running.clear()
