"""The machinery of the multi-process load tests (``test_load_multiprocess.py``): the simulator in a
process of its own, the accounts registered once, the 'spawn' worker processes that each open
their own ``Pool`` from ``Settings``, and what their reports add up to.

Workers are module-level functions of this module so that a 'spawn' child can import them; what a
worker is told crosses the process boundary as plain values (``WorkerPlan``), and what it reports
comes back as a dict through a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_pool.breaker import BreakerView, RedisBreakerStore
from claude_pool.core.config import PoolConfig
from claude_pool.core.errors import DeadlineExceeded, NoAccountAvailable
from claude_pool.core.settings import Settings
from claude_pool.pool import Pool
from claude_pool.pool.listeners import PoolListener, Selected
from claude_pool.pool.models import AttemptRecord, DelegationRequest
from claude_pool.runtime import Runtime
from claude_pool.simulator import KeySpec, Limits, OrgSpec
from tests.plugins.processes import python_module, run_spawned
from tests.plugins.runtimes import register_simulated_keys

__all__ = [
    "TENANT",
    "LoadSummary",
    "SimProcess",
    "WorkerPlan",
    "breaker_worker",
    "load_worker",
    "poll_breaker",
    "register_accounts",
    "run_in_background",
    "run_processes",
    "summarize_load",
]

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
        proc = python_module(
            "claude_pool", "simulate", "--scenario", str(path), "--port", "0", "--json", stderr=log, text=True
        )
        log.close()  # the child holds its own descriptor
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the command prints one JSON line once it listens
        if not line:
            proc.wait(timeout=10)
            raise RuntimeError(f"the simulator did not start: {(where / 'simulator.log').read_text()}")
        info = json.loads(line)
        return cls(proc, info["base_url"], info)

    @property
    def keys(self) -> list[KeySpec]:
        return [KeySpec(k["key"], k["org"], k["name"]) for k in self.described["keys"]]

    @property
    def orgs(self) -> list[OrgSpec]:
        organizations = self.described["organizations"]
        return [OrgSpec(o["id"], Limits(**o["limits"]), o["admin_key"]) for o in organizations]

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


def register_accounts(settings: Settings, config: PoolConfig, sim: SimProcess) -> dict[str, str]:
    """Every simulated key as an account of ``TENANT`` with its organization's limits (no capacity
    groups); name -> account id."""
    runtime = Runtime(settings=settings, config=config)
    try:
        return register_simulated_keys(runtime, sim, organization_id=TENANT, shared_orgs=False)
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
                    await asyncio.sleep(delay)  # the arrival schedule: the offered load itself
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


def breaker_worker(plan: WorkerPlan, stop: Any, barrier: Any, results: Any) -> None:
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


def run_processes(
    target: Callable[..., None],
    plans: list[WorkerPlan],
    *extra: Any,
    on_started: Callable[[], None] | None = None,
    timeout: float = 120.0,
) -> list[dict[str, Any]]:
    """Start one 'spawn' process per plan, each called as ``target(plan, *extra, barrier, results)``,
    release them together once every worker has its pool open and connected (the parent waits at
    that start line too, so ``timeout`` counts from there), gather what each reports."""
    return run_spawned(
        target, [(plan, *extra) for plan in plans], timeout=timeout, on_started=on_started or (lambda: None)
    )


@contextlib.asynccontextmanager
async def run_in_background(
    target: Callable[..., None], plans: list[WorkerPlan], stop: Any
) -> AsyncIterator[asyncio.Task[list[dict[str, Any]]]]:
    """``run_processes(target, plans, stop)`` on a thread while the block watches; the block starts
    once every worker has passed the start line. On leaving, ``stop`` is set and the workers end:
    the yielded task then holds their reports."""
    loop = asyncio.get_running_loop()
    started = asyncio.Event()

    def on_started() -> None:  # called on run_processes' thread
        loop.call_soon_threadsafe(started.set)

    run = asyncio.create_task(asyncio.to_thread(run_processes, target, plans, stop, on_started=on_started))
    try:
        await asyncio.wait_for(started.wait(), 120)
        yield run
    finally:
        stop.set()
        await run


async def poll_breaker(
    store: RedisBreakerStore, account_id: str, until: Callable[[BreakerView], bool], *, timeout: float = 30.0
) -> BreakerView:
    """The account's breaker as soon as ``until`` holds, polled every 20 ms for at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        view = (await store.views([account_id]))[account_id]
        if until(view):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"the breaker never got there: {view}")
        await asyncio.sleep(0.02)


# --- what the load workers' reports add up to ------------------------------------------------------


@dataclass(frozen=True)
class LoadSummary:
    offered: int
    outcomes: Counter[str]
    failed_attempts: Counter[str]
    started_at: float
    elapsed: float  # from the common start line to the last answer
    served_output: int  # output tokens the workers were told of
    unexpected: list[str]


def summarize_load(reports: Sequence[dict[str, Any]]) -> LoadSummary:
    outcomes: Counter[str] = Counter()
    failed_attempts: Counter[str] = Counter()
    for report in reports:
        outcomes.update(report["outcomes"])
        failed_attempts.update(report["failed_attempts"])
    started_at = min(r["start"] for r in reports)
    return LoadSummary(
        offered=sum(r["offered"] for r in reports),
        outcomes=outcomes,
        failed_attempts=failed_attempts,
        started_at=started_at,
        elapsed=max(r["last_done"] for r in reports) - started_at,
        served_output=sum(r["served_output"] for r in reports),
        unexpected=[u for r in reports for u in r["unexpected"]],
    )
