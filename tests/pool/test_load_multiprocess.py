"""The pool under load across processes, proved from the simulator's own counts (DESIGN.md 4.2-4.4).

One simulator runs in a process of its own (``python -m claude_pool simulate``, as a user starts it),
so the pool's workers never share a CPU-bound event loop with it and it is never the bottleneck: it
serves thousands of requests a second (bench/results/simulator.md) and these tests offer a few
hundred. Every worker is a 'spawn' process that builds its own ``Runtime`` and ``Pool.open`` from
``Settings``, exactly as a Prefect flow run would; the parent registers the accounts once in the
shared SQLite database (``Settings.home``). On Redis the workers share the test's ``redis_prefix``;
on the embedded store they share ``<home>/capacity.db`` and ``<home>/breakers.db``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from claude_pool.breaker import BreakerView, RedisBreakerStore, State
from claude_pool.core.config import PoolConfig
from claude_pool.core.errors import DeadlineExceeded, NoAccountAvailable
from claude_pool.core.settings import Secret, Settings
from claude_pool.pool import Pool
from claude_pool.pool.listeners import PoolListener, Selected
from claude_pool.pool.models import AttemptRecord, DelegationRequest
from claude_pool.runtime import Runtime
from claude_pool.simulator import Latency, Scenario

from .conftest import PoolWorld

TENANT = "tenant-a"
# 4 characters per token (the simulator's and the estimator's rule): about 50 input tokens a request.
PROMPT_FILLER = "pool load test, every token counted twice and charged once. " * 4


# --- the simulator, in its own process ------------------------------------------------------------


@dataclass
class SimProcess:
    """``claude-pool simulate --json`` in a child process, read and steered over its HTTP endpoints."""

    proc: subprocess.Popen[str]
    base_url: str
    described: dict[str, Any]

    @classmethod
    def start(cls, scenario: dict[str, Any], where: Path) -> SimProcess:
        path = where / "scenario.json"
        path.write_text(json.dumps(scenario), encoding="utf-8")
        log = (where / "simulator.log").open("w", encoding="utf-8")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "claude_pool",
                "simulate",
                "--scenario",
                str(path),
                "--port",
                "0",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()  # the child holds its own descriptor
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the command prints one JSON line once it listens
        if not line:
            proc.wait(timeout=10)
            raise RuntimeError(f"the simulator did not start: {(where / 'simulator.log').read_text()}")
        info = json.loads(line)
        return cls(proc, info["base_url"], info)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/_sim/stats", timeout=10) as reply:  # noqa: S310
            data: dict[str, Any] = json.load(reply)
        return data

    def received(self, key_name: str) -> int:
        return int(self.stats()["keys"][key_name]["received"])

    def close(self) -> None:
        self.proc.terminate()  # SIGTERM: the command stops its servers and exits
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _settings(home: Path, base_url: str, key: str, redis: tuple[str, str] | None) -> Settings:
    return Settings(
        home=home,
        database_url=f"sqlite:///{home / 'claude-pool.db'}",
        redis_url=redis[0] if redis else None,
        redis_prefix=redis[1] if redis else "claude-pool",
        encryption_key=Secret(key),
        anthropic_base_url=base_url,
        log_file=None,
    )


def _register(settings: Settings, config: PoolConfig, sim: SimProcess) -> dict[str, str]:
    """Every simulated key as an account with its organization's limits; name -> account id."""
    runtime = Runtime(settings=settings, config=config)
    try:
        runtime.db.upgrade()
        limits = {o["id"]: o["limits"] for o in sim.described["organizations"]}
        ids = {}
        for key in sim.described["keys"]:
            lim = limits[key["org"]]
            account = runtime.accounts.register(
                {
                    "organization_id": TENANT,
                    "name": key["name"],
                    "tier": "pro",
                    "api_key": key["key"],
                    "requests_per_minute": lim["rpm"],
                    "input_tokens_per_minute": lim["itpm"],
                    "output_tokens_per_minute": lim["otpm"],
                }
            )
            ids[key["name"]] = account.id
        return ids
    finally:
        runtime.close()


# --- the worker processes -------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker process is told (plain values: it crosses a 'spawn' boundary)."""

    index: int
    settings: Settings
    config: dict[str, Any]
    # load test: arrivals per second, for how long, and how long each request may wait for room
    rate: float = 0.0
    seconds: float = 0.0
    wait: float = 0.0
    max_tokens: int = 64
    # breaker test: delegations in flight at once, each task one after another until told to stop
    concurrency: int = 0
    watch: str = ""  # the account id whose attempts and probes are counted


class _Attempts(PoolListener):
    """Counts this process's attempts that did not succeed, by outcome and status."""

    def __init__(self) -> None:
        self.failed: Counter[str] = Counter()

    async def on_attempt(self, request: DelegationRequest, attempt: AttemptRecord) -> None:
        if attempt.outcome != "success":
            self.failed[f"{attempt.outcome} {attempt.status_code} {attempt.error_type}"] += 1


class _Watch(PoolListener):
    """Counts the attempts and breaker probes on one account, as this process made them."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.attempts = 0
        self.probes = 0

    async def on_selection(self, request: DelegationRequest, selected: Selected) -> None:
        if selected.account_id == self.account_id and selected.probe:
            self.probes += 1

    async def on_attempt(self, request: DelegationRequest, attempt: AttemptRecord) -> None:
        if attempt.account_id == self.account_id:
            self.attempts += 1


def _open(plan: WorkerPlan, listeners: list[PoolListener]) -> tuple[Runtime, Pool]:
    # Thousands of per-call INFO/WARNING lines would only cost CPU that the load needs.
    logging.getLogger("claude_pool").setLevel(logging.ERROR)
    runtime = Runtime(settings=plan.settings, config=PoolConfig.model_validate(plan.config))
    return runtime, Pool.open(runtime, listeners=listeners)


async def _warm(pool: Pool) -> None:
    """Connect to every store before the start line, without spending any capacity."""
    accounts = await pool.directory.all()
    await pool.capacity.view([a.candidate for a in accounts])
    await pool.breaker.states([a.id for a in accounts])


def load_worker(plan: WorkerPlan, barrier: Any, results: Any) -> None:
    results.put(asyncio.run(_offer_load(plan, barrier)))


async def _offer_load(plan: WorkerPlan, barrier: Any) -> dict[str, Any]:
    """Open-loop arrivals at ``plan.rate`` for ``plan.seconds``: arrivals do not wait for answers, so
    the offered load stays what the test asked for however slowly the pool admits."""
    attempts = _Attempts()
    runtime, pool = _open(plan, [attempts])
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    served_output = 0
    try:
        async with pool:
            await _warm(pool)
            await asyncio.to_thread(barrier.wait, 120)
            start = time.time()
            end = start + plan.seconds
            last_done = start

            async def one(i: int) -> None:
                nonlocal served_output, last_done
                request = DelegationRequest(
                    organization_id=TENANT,
                    # distinct bodies: the simulator derives each answer's length from the bytes
                    message=f"worker {plan.index:02d} request {i:06d}: {PROMPT_FILLER}",
                    max_tokens=plan.max_tokens,
                    # wait for room, but never past the stretch: nothing is served after it
                    deadline=min(time.time() + plan.wait, end),
                )
                try:
                    result = await pool.delegate(request)
                except (NoAccountAvailable, DeadlineExceeded) as exc:
                    outcomes[type(exc).__name__] += 1
                    return
                except Exception as exc:  # reported, and the test fails on it
                    outcomes["unexpected"] += 1
                    unexpected.append(f"{type(exc).__name__}: {str(exc)[:300]}")
                    return
                outcomes["served"] += 1
                served_output += result.usage.output_tokens
                last_done = max(last_done, time.time())

            tasks = []
            for i in range(round(plan.rate * plan.seconds)):
                delay = start + i / plan.rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
    finally:
        runtime.close()
    return {
        "index": plan.index,
        "start": start,
        "last_done": last_done,
        "offered": len(tasks),
        "outcomes": dict(outcomes),
        "served_output": served_output,
        "unexpected": unexpected[:5],
        "failed_attempts": dict(attempts.failed),
    }


def breaker_worker(plan: WorkerPlan, barrier: Any, stop: Any, results: Any) -> None:
    results.put(asyncio.run(_hammer(plan, barrier, stop)))


async def _hammer(plan: WorkerPlan, barrier: Any, stop: Any) -> dict[str, Any]:
    watch = _Watch(plan.watch)
    runtime, pool = _open(plan, [watch])
    outcomes: Counter[str] = Counter()
    try:
        async with pool:
            await _warm(pool)
            await asyncio.to_thread(barrier.wait, 120)

            async def loop(task: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    request = DelegationRequest(
                        organization_id=TENANT, message=f"w{plan.index} t{task} #{i}", max_tokens=16
                    )
                    try:
                        await pool.delegate(request)
                        outcomes["served"] += 1
                    except Exception as exc:  # counted: the test expects none
                        outcomes[type(exc).__name__] += 1
                    await asyncio.sleep(0.005)  # leave the parent's polling some CPU

            await asyncio.gather(*(loop(t) for t in range(plan.concurrency)))
    finally:
        runtime.close()
    return {"outcomes": dict(outcomes), "attempts": watch.attempts, "probes": watch.probes}


def _run_processes(
    target: Callable[..., None],
    plans: list[WorkerPlan],
    *extra: Any,
    on_started: Callable[[], None] | None = None,
    timeout: float = 120.0,
) -> list[dict[str, Any]]:
    """Start one 'spawn' process per plan, release them together, gather what each reports."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(plans) + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(plan, barrier, *extra, results)) for plan in plans]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=120)  # every worker has its pool open and connected
        if on_started is not None:
            on_started()
        out = [results.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=15)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        results.join_thread()
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return out


# --- 1. exactness under load ----------------------------------------------------------------------

ACCOUNTS = 3
RPM, ITPM, OTPM = 600, 60_000, 12_000
MAX_TOKENS = 64
STRETCH_SECONDS = 15.0
WAIT_SECONDS = 2.0


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "workers"), [("redis", 8), ("embedded", 4)])
def test_twice_the_capacity_from_many_processes_is_served_without_one_429(
    backend: str, workers: int, request: pytest.FixtureRequest, tmp_path: Path, encryption_key: str
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
        redis = (
            (request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))
            if backend == "redis"
            else None
        )
        settings = _settings(tmp_path / "home", sim.base_url, encryption_key, redis)
        config = PoolConfig()
        _register(settings, config, sim)
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
        out = _run_processes(load_worker, plans, timeout=STRETCH_SECONDS + WAIT_SECONDS + 60)
        stats = sim.stats()
    finally:
        sim.close()

    total = stats["total"]
    outcomes: Counter[str] = Counter()
    failed_attempts: Counter[str] = Counter()
    for o in out:
        outcomes.update(o["outcomes"])
        failed_attempts.update(o["failed_attempts"])
    start = min(o["start"] for o in out)
    elapsed = max(o["last_done"] for o in out) - start
    capacity = ACCOUNTS * (OTPM + OTPM / 60 * elapsed)
    served_share = total["output_tokens"] / capacity
    print(
        f"\n[{backend}, {workers} processes] offered {sum(o['offered'] for o in out)} requests "
        f"({offered_rate:.0f}/s) over {elapsed:.1f} s; outcomes {dict(outcomes)}; "
        f"failed attempts {dict(failed_attempts)}; "
        f"simulator: served {total['served']}, output tokens {total['output_tokens']} of capacity "
        f"{capacity:.0f} ({served_share:.1%}), 429s "
        + str({m: total[f"rejected_rate_limit_{m}"] for m in ("requests", "input_tokens", "output_tokens")})
    )

    assert [u for o in out for u in o["unexpected"]] == []
    assert total["rejected_rate_limit_requests"] == 0
    assert total["rejected_rate_limit_input_tokens"] == 0
    assert total["rejected_rate_limit_output_tokens"] == 0
    # what the workers were told was served, the simulator served; it may also have served calls
    # whose client timed out at the caller's deadline (DeadlineExceeded: the pool kept them charged)
    assert total["received"] == total["served"]
    assert outcomes["served"] <= total["served"] <= outcomes["served"] + outcomes["DeadlineExceeded"]
    assert total["output_tokens"] >= sum(o["served_output"] for o in out)
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
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    try:
        settings = _settings(tmp_path / "home", sim.base_url, encryption_key, (redis_url, redis_prefix))
        config = PoolConfig.model_validate(
            {
                "selection": {"strategy": "round_robin"},
                "circuitBreaker": {
                    "failureThreshold": THRESHOLD,
                    "timeoutSeconds": OPEN_SECONDS,
                    "halfOpenMaxCalls": 1,
                    "backoffMultiplier": 2.0,
                },
            }
        )
        ids = _register(settings, config, sim)
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
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        run = asyncio.create_task(
            asyncio.to_thread(
                _run_processes,
                breaker_worker,
                plans,
                stop,
                on_started=lambda: loop.call_soon_threadsafe(started.set),
            )
        )
        try:
            await asyncio.wait_for(started.wait(), 120)

            async def breaker(until: Callable[[BreakerView], bool]) -> BreakerView:
                for _ in range(1500):
                    view = (await store.views([bad]))[bad]
                    if until(view):
                        return view
                    await asyncio.sleep(0.02)
                raise AssertionError(f"the breaker never got there: {view}")

            async def received() -> int:
                return await asyncio.to_thread(sim.received, "acct-1")

            async def stays(count: int, until: float) -> None:
                while time.time() < until:
                    assert await received() == count
                    await asyncio.sleep(0.1)

            first = await breaker(lambda v: v.state is State.OPEN and v.trips == 1)
            assert first.open_until is not None
            await asyncio.sleep(0.5)  # calls let through before it opened land within milliseconds
            before = await received()
            assert THRESHOLD <= before <= THRESHOLD + BREAKER_WORKERS * BREAKER_CONCURRENCY
            await stays(before, first.open_until - 0.2)

            second = await breaker(lambda v: v.trips == 2)
            assert second.state is State.OPEN and second.open_until is not None
            assert second.open_until - second.opened_at == pytest.approx(2 * OPEN_SECONDS, abs=0.01)  # type: ignore[operator]
            await asyncio.sleep(0.5)
            assert await received() == before + 1  # one probe, from one process
            await stays(before + 1, time.time() + 2.0)
        finally:
            stop.set()
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
        with pytest.raises(DeadlineExceeded):
            await pool.delegate(request)
        breaker = (await pool.breaker.states([account]))[account]
        (directory_entry,) = await pool.directory.all()
        (view,) = await pool.capacity.view([directory_entry.candidate])
    assert breaker.state is State.CLOSED and breaker.consecutive_failures == 0
    # max_tokens still charged, give or take a second of refill; refunded, the bucket would be full
    assert view.output_tokens <= limits["otpm"] - 1_000 + 100
