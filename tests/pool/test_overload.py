"""Under overload and at a cold start, as a caller sees it: a request is given its place or refused at
once with when to retry; a pool started on keys another client has drained meets no 429."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

import pytest
import redis.asyncio as aioredis

from claude_pool.core.config import PoolConfig
from claude_pool.core.errors import DeadlineExceeded, NoAccountAvailable
from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest, DelegationResult
from claude_pool.simulator import FaultRule, Scenario
from claude_pool.simulator.scenario import Latency
from tests.plugins.simulators import drain_key
from tests.plugins.stores import StoreBackend
from tests.pool.conftest import PoolWorld

# One key of 60 requests a minute (one back every second); tokens never bind.
ONE_KEY = Scenario.uniform(accounts=1, rpm=60, itpm=10_000_000, otpm=1_000_000)
REQ = DelegationRequest(organization_id="tenant-a", message="hello", max_tokens=16)
COLD_EMPTY = PoolConfig.model_validate({"capacity": {"coldStart": "empty"}})
TRUSTING = PoolConfig.model_validate({"capacity": {"coldStart": "full"}})
PROBE_MESSAGES = [{"role": "user", "content": "."}]
# A key of 60 requests and 40,000 input tokens a minute, and a request of about 30,000 input tokens:
# on a cold guess it would wait 45 s for refill to bring its input, past any queue's bound.
BIG_KEY = Scenario.uniform(accounts=1, rpm=60, itpm=40_000, otpm=1_000_000)
BIG = DelegationRequest(organization_id="tenant-a", message="word " * 24_000, max_tokens=16)


async def served_on_retry(pool: Pool, request: DelegationRequest, within: float) -> tuple[DelegationResult, int]:
    """``request`` sent again every 0.25 s while it is refused, for ``within`` seconds: its result,
    and how many times it was refused first."""
    refusals, started = 0, time.monotonic()
    while True:
        try:
            return await pool.delegate(request.model_copy(update={"deadline": time.time() + 20})), refusals
        except NoAccountAvailable:
            refusals += 1
            if time.monotonic() - started > within:
                raise
            await asyncio.sleep(0.25)


async def served_together(pool: Pool, count: int, deadline: float) -> tuple[list[DelegationResult], float]:
    """``count`` requests at once with ``deadline``: their results, and the seconds until the last."""
    started = time.monotonic()
    results = await asyncio.gather(
        *(pool.delegate(REQ.model_copy(update={"deadline": deadline})) for _ in range(count))
    )
    return list(results), time.monotonic() - started


def calibration_probes(world: PoolWorld) -> int:
    """The pool's own calibration calls the simulator received (see CalibrationProbes)."""
    return sum(
        1
        for key in world.sim.keys
        for logged in world.sim.state.requests_of(key.name)
        if logged["body"].get("max_tokens") == 1 and logged["body"].get("messages") == PROBE_MESSAGES
    )


def assert_served_without_429(world: PoolWorld, results: list[DelegationResult], served: int) -> None:
    """Every request answered, ``served`` of them by the simulator besides the pool's calibration
    probes (at most one per key), and no 429."""
    assert all(r.text for r in results)
    stats = world.sim.stats()
    probes = calibration_probes(world)
    assert probes <= len(world.sim.keys)
    assert stats.rate_limited == 0 and stats.total["served"] - probes == served


async def test_a_pool_started_on_a_drained_key_meets_no_429(make_world: Callable[..., PoolWorld]) -> None:
    world = make_world(ONE_KEY, config=COLD_EMPTY)
    drain_key(world.sim, world.sim.keys[0])
    async with world.open_pool() as pool:
        deadline = time.time() + 20
        results = await asyncio.gather(
            *(pool.delegate(REQ.model_copy(update={"deadline": deadline})) for _ in range(4))
        )
    assert_served_without_429(world, results, 4)


async def test_a_cold_pool_on_a_rested_key_serves_its_queue_once_the_first_answer_shows_it(
    make_world: Callable[..., PoolWorld],
) -> None:
    """A cold pool takes an unseen bucket as empty and queues eight requests at the refill rate
    (one a second: the last place 8 s away); the first answer says the key is rested, and the
    requests queued on the guess ask again and are served at once, not at their places."""
    world = make_world(ONE_KEY, config=COLD_EMPTY)
    async with world.open_pool() as pool:
        results, took = await served_together(pool, 8, time.time() + 20)
    assert_served_without_429(world, results, 8)
    assert took < 4.5, f"the queue kept its places on the guess: {took:.1f} s"  # kept: 8 s


@pytest.mark.parametrize("store_backend", ["redis"], indirect=True)
async def test_a_store_restarted_empty_is_cold_again_and_its_queue_served_once_an_answer_shows_it(
    make_world: Callable[..., PoolWorld], store_backend: StoreBackend
) -> None:
    """The same, after the first answers had calibrated the bucket and Redis then lost everything:
    the places given on the new guess are not kept either (this worker's memory of the first
    calibration must not outlive the store's)."""
    world = make_world(ONE_KEY, config=COLD_EMPTY)
    client = aioredis.Redis.from_url(cast(str, store_backend.redis_url))
    async with world.open_pool() as pool:
        deadline = time.time() + 30
        await served_together(pool, 8, deadline)
        keys = [k async for k in client.scan_iter(match="{" + store_backend.redis_prefix + "}*")]
        await client.delete(*keys)  # what a restart without persistence leaves
        results, took = await served_together(pool, 8, deadline)
    await client.aclose()
    assert_served_without_429(world, results, 16)
    assert took < 4.5, f"the queue kept its places on the guess: {took:.1f} s"  # kept: 8 s


async def test_another_workers_answer_wakes_the_requests_queued_on_the_guess(
    make_world: Callable[..., PoolWorld],
) -> None:
    """Two workers on one store and one cold key of 20 requests a minute (one back every 3 s): the
    first worker's request has the first place (3 s); the second worker's eight queue behind it,
    from 6 s on. The first answer (the first worker's) shows the key rested, and the second
    worker's requests ask again and are served then, not at their own first answer (6 s)."""
    world = make_world(Scenario.uniform(accounts=1, rpm=20, itpm=10_000_000, otpm=1_000_000), config=COLD_EMPTY)
    async with world.open_pool() as first, world.open_pool() as second:
        deadline = time.time() + 40
        ahead = asyncio.create_task(first.delegate(REQ.model_copy(update={"deadline": deadline})))
        await asyncio.sleep(0.2)
        results, took = await served_together(second, 8, deadline)
        assert (await ahead).text
    assert_served_without_429(world, results, 9)
    assert took < 5.0, f"the second worker waited for its own first answer: {took:.1f} s"  # then: 6 s


async def test_a_large_request_on_a_cold_rested_key_is_served_after_a_calibration_probe(
    make_world: Callable[..., PoolWorld],
) -> None:
    """A cold pool takes the key as drained: a request of 30,000 input tokens on 40,000 a minute
    would wait 45 s for refill, and is refused. The organization's first request has the pool
    probe the key with a tiny call, whose answer shows it rested: the request, sent again, is
    served within seconds."""
    world = make_world(BIG_KEY, config=COLD_EMPTY)
    async with world.open_pool() as pool:
        result, refusals = await served_on_retry(pool, BIG, within=5.0)
    assert result.text and refusals >= 1
    assert calibration_probes(world) == 1
    assert_served_without_429(world, [result], 1)


async def test_small_requests_on_cold_keys_are_calibrated_by_their_own_answers_without_probes(
    make_world: Callable[..., PoolWorld],
) -> None:
    """Requests of a few tokens on three cold drained keys, the first alone: each would be sent as
    soon as a probe (both wait for one request of refill), so no probe takes a place a caller's
    request could have (the first request's would have taken the other two keys' first places):
    every call upstream received is a caller's, and none met a 429."""
    world = make_world(Scenario.uniform(accounts=3, rpm=60, itpm=20_000, otpm=8_000), config=COLD_EMPTY)
    for key in world.sim.keys:
        drain_key(world.sim, key)
    async with world.open_pool() as pool:
        first = await pool.delegate(REQ.model_copy(update={"deadline": time.time() + 20}))
        results, _ = await served_together(pool, 5, time.time() + 20)
    assert calibration_probes(world) == 0
    assert_served_without_429(world, [first, *results], 6)


async def test_a_calibration_probe_on_a_drained_key_waits_for_refill_and_meets_no_429(
    make_world: Callable[..., PoolWorld],
) -> None:
    world = make_world(BIG_KEY, config=COLD_EMPTY)
    drain_key(world.sim, world.sim.keys[0])
    async with world.open_pool() as pool:
        result, _ = await served_on_retry(pool, BIG, within=8.0)
    assert calibration_probes(world) == 1
    assert_served_without_429(world, [result], 1)


async def test_the_same_pool_trusting_its_limits_would_have_met_429s(
    make_world: Callable[..., PoolWorld],
) -> None:
    """The control of the first test (a pool started on a drained key): what the cold start
    prevents is real."""
    world = make_world(ONE_KEY)  # the tests' world: buckets start as full as the limits say
    drain_key(world.sim, world.sim.keys[0])
    async with world.open_pool() as pool:
        await asyncio.gather(*(pool.delegate(REQ) for _ in range(4)), return_exceptions=True)
    assert world.sim.stats().rate_limited > 0


async def test_beyond_its_deadline_a_request_is_refused_at_once_not_after_waiting(
    make_world: Callable[..., PoolWorld],
) -> None:
    """Ten requests on a drained minute with 3.5 s to live: those whose place comes in time are
    served in order, the others are refused with the time to retry; none meets a 429."""
    world = make_world(ONE_KEY)
    async with world.open_pool() as pool:
        for _ in range(60):
            await pool.delegate(REQ)
        deadline = time.time() + 3.5
        outcomes = await asyncio.gather(
            *(pool.delegate(REQ.model_copy(update={"deadline": deadline})) for _ in range(10)),
            return_exceptions=True,
        )
    served = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, NoAccountAvailable)]
    assert len(served) + len(refused) == 10
    assert 1 <= len(served) <= 4  # one request a second comes back, for 3.5 s at most
    assert all(e.retry_after is not None and e.retry_after > 0 for e in refused)
    assert world.sim.stats().rate_limited == 0


async def test_a_queued_request_whose_call_could_no_longer_finish_by_its_deadline_is_not_sent(
    make_world: Callable[..., PoolWorld],
) -> None:
    """Calls take half a second. A worker that has answered nothing yet queues a request whose place
    comes about 0.3 s before its deadline; by then the worker's first answer has shown that a call
    needs more: the request gives its place back unsent (DeadlineExceeded saying so), rather than
    be cut at its deadline after upstream has charged it. (The drain's answers, read half a second
    after upstream counted them, show no refill yet: the next places come 1.5 and 2.5 s after it.)"""
    world = make_world(ONE_KEY.with_(latency=Latency(ttft_ms=500)), config=TRUSTING)
    async with world.open_pool() as first, world.open_pool() as second:
        await asyncio.gather(*(first.delegate(REQ) for _ in range(60)))  # the minute's requests
        ahead = asyncio.create_task(second.delegate(REQ))  # the next place, about 1 s on
        await asyncio.sleep(0.1)
        late = REQ.model_copy(update={"deadline": time.time() + 2.2})  # its place: about 1.9 s on
        with pytest.raises(DeadlineExceeded, match="less than a call needs"):
            await second.delegate(late)
        assert (await ahead).text
    key = world.sim.keys[0]
    assert len(world.sim.state.requests_of(key.name)) == 61  # the late one never went out
    assert world.sim.stats().rate_limited == 0


@pytest.mark.parametrize("bound", [0.0, 30.0])
async def test_a_callers_own_bound_is_kept(make_world: Callable[..., PoolWorld], bound: float) -> None:
    world = make_world(ONE_KEY)
    async with world.open_pool() as pool:
        for _ in range(60):
            await pool.delegate(REQ)
        request = REQ.model_copy(update={"max_queue_seconds": bound})
        if bound == 0:
            with pytest.raises(NoAccountAvailable) as info:
                await pool.delegate(request)
            assert info.value.retry_after == pytest.approx(1.0, abs=0.5)
        else:
            assert (await pool.delegate(request)).text
    assert world.sim.stats().rate_limited == 0


async def test_a_queued_request_whose_account_meets_a_429_meanwhile_waits_out_the_cooldown(
    make_world: Callable[..., PoolWorld],
) -> None:
    """Two requests queued on a drained key; the first one sent meets a 429 (retry in 3 s). The
    second one's place was computed before upstream said to stop: it gives it back and is sent
    after the cooldown, instead of meeting a second 429."""
    world = make_world(ONE_KEY)
    async with world.open_pool() as pool:
        for _ in range(60):
            await pool.delegate(REQ)
        now = world.sim.elapsed()
        world.sim.add_fault(FaultRule(kind="ramp", retry_after=3, start=now + 0.5, end=now + 3.5))
        deadline = time.time() + 20
        first, second = await asyncio.gather(
            pool.delegate(REQ.model_copy(update={"deadline": deadline})),
            pool.delegate(REQ.model_copy(update={"deadline": deadline})),
            return_exceptions=True,
        )
    served = [r for r in (first, second) if not isinstance(r, BaseException)]
    assert len(served) >= 1
    assert world.sim.stats().total["rejected_ramp"] == 1
