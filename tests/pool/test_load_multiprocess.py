"""The pool under load across processes, proved from the simulator's own counts (DESIGN.md 4.2-4.4).

One simulator runs in a process of its own (``python -m claude_pool simulate``, as a user starts it),
so the pool's workers never share a CPU-bound event loop with it and it is never the bottleneck: it
serves thousands of requests a second (bench/results/simulator.md) and these tests offer a few
hundred. Every worker is a 'spawn' process that builds its own ``Runtime`` and ``Pool.open`` from
``Settings``, exactly as a Prefect flow run would; the parent registers the accounts once in the
shared SQLite database (``Settings.home``). On Redis the workers share the test's ``redis_prefix``;
on the embedded store they share ``<home>/capacity.db`` and ``<home>/breakers.db``.

The processes, the simulator process and the sums of what workers report live in ``_load_harness``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_pool.breaker import RedisBreakerStore, State
from claude_pool.core.config import PoolConfig
from claude_pool.core.errors import DeadlineExceeded
from claude_pool.pool.models import DelegationRequest
from claude_pool.simulator import Latency, Scenario
from tests.plugins.runtimes import simulated_settings
from tests.plugins.stores import StoreBackend

from ._load_harness import (
    TENANT,
    SimProcess,
    WorkerPlan,
    breaker_worker,
    load_worker,
    poll_breaker,
    register_accounts,
    run_in_background,
    run_processes,
    summarize_load,
)
from .conftest import PoolWorld

# --- 1. exactness under load ----------------------------------------------------------------------

ACCOUNTS = 3
RPM, ITPM, OTPM = 600, 60_000, 12_000
MAX_TOKENS = 64
STRETCH_SECONDS = 15.0
WAIT_SECONDS = 2.0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("store_backend", "workers"), [("redis", 8), ("embedded", 4)], indirect=["store_backend"]
)
def test_twice_the_capacity_from_many_processes_is_served_without_one_429(
    store_backend: StoreBackend, workers: int, tmp_path: Path, encryption_key: str
) -> None:
    """Offered twice what the accounts allow, the pool serves all they allow and not one request more.

    Limits: 3 organizations of 600 RPM, 60,000 ITPM, 12,000 OTPM. Each request asks ~50 input tokens
    and ``max_tokens`` 64; the simulator answers a length drawn in [1, 64] (mean 32.5), charges the 64
    up front and refunds the rest at the end. So output tokens bind: about 370 requests per minute per
    organization, below the 600 RPM and the 1,200 requests that ITPM allows. This exercises every part
    of the bookkeeping: reserving max_tokens, the refund at settlement, and calibration from headers.

    Small limits make the refill matter within a short test: each bucket refills 200 output tokens
    a second, so after the first few seconds spend the initial minute's worth, the rest of the stretch
    runs on refill alone, one request every ~160 ms per organization.

    Capacity over the stretch: a bucket starts full (its capacity is the per-minute limit) and refills
    limit/60 per second, so what can be served in ``elapsed`` seconds is
    ``OTPM + OTPM / 60 * elapsed`` output tokens per organization (a 429-free server can never serve
    more; ``served < capacity`` only by what is left in the buckets when the stretch ends). Elapsed runs
    from the start line to the last answer. The simulator's own counts are the truth: no 429 of
    any kind, and served output tokens >= 95% of that capacity.

    Headers report exact ``remaining`` values (``round_tokens_to: 1``): with the thousand-rounding of
    the real API, calibration lowers a level by up to 999 tokens once, a fixed offset (not a rate loss)
    that would be 7% of a 15 s stretch's 15,000 tokens here, and nothing over an hour.

    Each request may wait up to 2 s for room (its ``deadline``, never past the stretch), so at twice
    the capacity about half of them end in ``NoAccountAvailable``: only when the wait cannot be met.
    """
    sim = SimProcess.start(
        {
            "seed": 11,
            "uniform": {"accounts": ACCOUNTS, "rpm": RPM, "itpm": ITPM, "otpm": OTPM},
            "output": {"mode": "random"},
            "round_tokens_to": 1,
        },
        tmp_path,
    )
    try:
        home = tmp_path / "home"
        settings = simulated_settings(home, sim.base_url, encryption_key, **store_backend.settings)
        # The capacity below counts each bucket's first minute: the buckets start as full as the
        # limits say (the cold start, which takes them as drained, is tested in test_overload.py).
        config = PoolConfig.model_validate({"capacity": {"coldStart": "full"}})
        register_accounts(settings, config, sim)
        mean_output = (MAX_TOKENS + 1) / 2
        capacity_requests = ACCOUNTS * (OTPM + OTPM / 60 * STRETCH_SECONDS) / mean_output
        offered_rate = 2 * capacity_requests / STRETCH_SECONDS
        plans = [
            WorkerPlan(
                index=i,
                settings=settings,
                config=config.model_dump(mode="json", by_alias=True),
                rate=offered_rate / workers,
                seconds=STRETCH_SECONDS,
                wait=WAIT_SECONDS,
                max_tokens=MAX_TOKENS,
            )
            for i in range(workers)
        ]
        load = summarize_load(run_processes(load_worker, plans, timeout=STRETCH_SECONDS + WAIT_SECONDS + 60))
        stats = sim.stats()
    finally:
        sim.close()

    total = stats["total"]
    outcomes = load.outcomes
    capacity = ACCOUNTS * (OTPM + OTPM / 60 * load.elapsed)
    served_share = total["output_tokens"] / capacity
    print(
        f"\n[{store_backend.name}, {workers} processes] offered {load.offered} requests "
        f"({offered_rate:.0f}/s) over {load.elapsed:.1f} s; outcomes {dict(outcomes)}; "
        f"failed attempts {dict(load.failed_attempts)}; "
        f"simulator: served {total['served']}, output tokens {total['output_tokens']} of capacity "
        f"{capacity:.0f} ({served_share:.1%}), 429s "
        + str({m: total[f"rejected_rate_limit_{m}"] for m in ("requests", "input_tokens", "output_tokens")})
    )

    assert load.unexpected == []
    assert total["rejected_rate_limit_requests"] == 0
    assert total["rejected_rate_limit_input_tokens"] == 0
    assert total["rejected_rate_limit_output_tokens"] == 0
    # what the workers were told was served, the simulator served; it may also have served calls
    # whose client timed out at the caller's deadline (DeadlineExceeded: the pool kept them charged)
    assert total["received"] == total["served"]
    assert outcomes["served"] <= total["served"] <= outcomes["served"] + outcomes["DeadlineExceeded"]
    assert total["output_tokens"] >= load.served_output
    assert served_share >= 0.95
    # and the load really was about twice the capacity: about half had to be turned away
    assert outcomes["NoAccountAvailable"] + outcomes["DeadlineExceeded"] >= 0.3 * sum(outcomes.values())


# --- 2. the breaker across processes --------------------------------------------------------------

THRESHOLD = 5
OPEN_SECONDS = 3.0
BREAKER_WORKERS = 4
BREAKER_CONCURRENCY = 8


@pytest.mark.slow
async def test_an_open_circuit_keeps_every_process_away_until_its_one_probe(
    redis_url: str, redis_prefix: str, tmp_path: Path, encryption_key: str
) -> None:
    """acct-1 fails every call (500). Several processes delegate in a loop, round robin, so acct-1
    is chosen again and again. From the simulator's ``received`` count for acct-1:

    - it opens after ``THRESHOLD`` failures, plus at most the calls already let through then;
    - while it is open, acct-1 receives nothing from any process;
    - after the timeout exactly one probe reaches it (half_open_max_calls 1); it fails, the circuit
      opens again (for twice as long), and acct-1 again receives nothing.

    Every delegation still succeeds, on acct-2 or acct-3.
    """
    sim = SimProcess.start(
        {
            "seed": 3,
            "uniform": {"accounts": 3, "rpm": 1_000_000, "itpm": 100_000_000, "otpm": 10_000_000},
            "faults": [{"kind": "error", "status": 500, "targets": ["acct-1"]}],
        },
        tmp_path,
    )
    store = RedisBreakerStore.from_url(redis_url, prefix=redis_prefix)
    stop = multiprocessing.get_context("spawn").Event()
    try:
        settings = simulated_settings(
            tmp_path / "home", sim.base_url, encryption_key, redis_url=redis_url, redis_prefix=redis_prefix
        )
        config = PoolConfig.model_validate(
            {
                "selection": {"strategy": "round_robin"},
                "capacity": {"coldStart": "full"},
                "circuitBreaker": {
                    "failureThreshold": THRESHOLD,
                    "timeoutSeconds": OPEN_SECONDS,
                    "halfOpenMaxCalls": 1,
                    "backoffMultiplier": 2.0,
                },
            }
        )
        ids = register_accounts(settings, config, sim)
        bad = ids["acct-1"]
        plans = [
            WorkerPlan(
                index=i,
                settings=settings,
                config=config.model_dump(mode="json", by_alias=True),
                concurrency=BREAKER_CONCURRENCY,
                watch=bad,
            )
            for i in range(BREAKER_WORKERS)
        ]

        async def received() -> int:
            return await asyncio.to_thread(sim.received, "acct-1")

        async def stays(count: int, until: float) -> None:
            # Letting time pass is the test here: the count must hold all through the open window.
            while time.time() < until:
                assert await received() == count
                await asyncio.sleep(0.1)

        async with run_in_background(breaker_worker, plans, stop) as run:
            first = await poll_breaker(store, bad, lambda v: v.state is State.OPEN and v.trips == 1)
            assert first.open_until is not None
            # A grace period, on purpose: calls let through just before it opened are still on their
            # way in other processes, which this one cannot see; they land within milliseconds.
            await asyncio.sleep(0.5)
            before = await received()
            assert THRESHOLD <= before <= THRESHOLD + BREAKER_WORKERS * BREAKER_CONCURRENCY
            await stays(before, first.open_until - 0.2)

            # The second opening is the probe's failure recorded, so the probe has been received.
            second = await poll_breaker(store, bad, lambda v: v.trips == 2)
            assert second.state is State.OPEN and second.open_until is not None
            assert second.open_until - second.opened_at == pytest.approx(2 * OPEN_SECONDS, abs=0.01)  # type: ignore[operator]
            assert await received() == before + 1  # one probe, from one process
            await stays(before + 1, time.time() + 2.0)
        out = await run
        final = await received()
    finally:
        await store.aclose()
        sim.close()

    outcomes: Counter[str] = Counter()
    for o in out:
        outcomes.update(o["outcomes"])
    print(
        f"\n[breaker, {BREAKER_WORKERS} processes] outcomes {dict(outcomes)}; acct-1 received {before} + 1 probe"
    )
    assert set(outcomes) == {"served"}
    # every call let through is one request the simulator received, and there was one probe
    assert sum(o["attempts"] for o in out) == final == before + 1
    assert sum(o["probes"] for o in out) == 1


# --- 3. what the load test found: a call cut short by its caller's deadline -----------------------


async def test_a_time_out_at_the_callers_deadline_is_not_counted_and_keeps_its_reservation(
    make_world: Callable[..., PoolWorld],
) -> None:
    """Under load, calls reserved just before their deadline got a client time-out of what was
    left. Two faults followed: the time-out counted against the account's breaker (five in a row
    opened a healthy account for 300 s), and settling refunded the whole reservation while the
    simulator, which had admitted the call, kept its input and generated output charged, so the
    pool's view ran ahead of upstream's and later reservations met 429s. Now the caller gets
    ``DeadlineExceeded``, the breaker is untouched and nothing of the reservation is refunded."""
    limits = {"rpm": 600, "itpm": 60_000, "otpm": 6_000}
    world = make_world(
        Scenario.uniform(accounts=1, **limits, latency=Latency(ttft_ms=1_000), round_tokens_to=1)
    )
    account = world.account_ids["acct-1"]
    request = DelegationRequest(
        organization_id=TENANT, message="slow", max_tokens=1_000, deadline=time.time() + 0.5
    )
    async with world.open_pool() as pool:
        started = time.time()
        with pytest.raises(DeadlineExceeded):
            await pool.delegate(request)
        breaker = (await pool.breaker.states([account]))[account]
        (directory_entry,) = await pool.directory.all()
        (view,) = await pool.capacity.view([directory_entry.candidate])
    assert breaker.state is State.CLOSED and breaker.consecutive_failures == 0
    # max_tokens still charged, give or take the refill since the call was reserved (otpm/60 a
    # second); refunded, the bucket would be full
    refill = (view.observed_at - started) * limits["otpm"] / 60
    assert view.output_tokens <= limits["otpm"] - 1_000 + refill
