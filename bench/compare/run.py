"""One contender on one scenario: a simulator of its own, its workers, the load, the counts.

Every process started here (the simulator, the workers) is stopped in ``finally``; Redis keys
under the run's prefix are deleted; the run's folder is removed.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.compare.contenders import Contender, prepare
from bench.compare.measure import Sample, SimProcess, Snapshots, tree_cpu_seconds
from bench.compare.processes import Child, start_child
from bench.compare.scenarios import BenchScenario
from bench.compare.worker import run_worker

__all__ = ["RunOutcome", "StartLine", "run_contender"]

FAULT_SNAPSHOT_LEAD_S = 0.05
READY_TIMEOUT = 300.0  # Prefect's ephemeral server may take 20 s, more on a loaded machine
# From the last drain to the load's start: time to post the faults, and the rested capacity every
# scenario meets (counted in what the limits allow).
START_AFTER_DRAIN_S = 2.0


class StartLine:
    """Where a scenario's contenders meet: once all are set up, then once all have drained their
    simulators' buckets. The load starts on one whole second for all, fixed after the second
    meeting: a start fixed before the drains could pass while a slow drain (on a loaded machine)
    still ran, and its contender's first seconds of arrivals would then all go at once."""

    def __init__(self, parties: int) -> None:
        self._ready = asyncio.Barrier(parties)
        self._drained = asyncio.Barrier(parties)
        self._start: float | None = None

    async def ready(self) -> None:
        await self._ready.wait()

    async def drained(self) -> float:
        """The load's start (epoch seconds), once every contender has drained."""
        await self._drained.wait()
        if self._start is None:  # the first to pass fixes it for all
            self._start = math.ceil(time.time()) + START_AFTER_DRAIN_S
        return self._start


@dataclass
class RunOutcome:
    contender: Contender
    scenario: BenchScenario
    error: str | None = None
    samples: list[Sample] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    cpu_s: float = 0.0
    cpu_window_s: float | None = None  # CPU from the scenario's measure_from_s to the end, when it has one
    processes: int = 0
    offered: int = 0
    key_orgs: dict[str, str] = field(default_factory=dict)
    rested_s: float = 0.0
    sim_offset_s: float = 0.0  # the simulator's own clock (elapsed_s) when the load started


def bare_scenario(scenario: BenchScenario) -> BenchScenario:
    """Upstream's latency: one key with limits far above the load, offered the scenario's arrivals."""
    return BenchScenario(
        name=f"{scenario.name}-bare", title="bare", phases=scenario.phases, duration_s=scenario.duration_s,
        simulator={"seed": 1, "output": scenario.simulator.get("output", {}),
                   "uniform": {"accounts": 1, "rpm": 100_000, "itpm": 10_000_000, "otpm": 10_000_000}},
        max_tokens=scenario.max_tokens, budget_s=scenario.budget_s,
    )


async def _spawn(contender: Contender, scenario: BenchScenario, prep: Any, base_url: str,
                 offsets: list[float], folder: Path) -> list[Child]:
    n = contender.processes(scenario)
    children = []
    for w in range(n):
        cfg = {
            "client": contender.client, "strategy": contender.strategy, "redis": contender.redis,
            "redis_prefix": prep.redis_prefix, "base_url": base_url, "keys": prep.keys,
            "max_tokens": scenario.max_tokens, "budget_s": scenario.budget_s,
            "indices": list(range(w, len(offsets), n)), "offsets": offsets[w::n],
            "log": str(folder.parent / f"{folder.name}-worker-{w}.log"),
        }
        children.append(start_child(run_worker, cfg, prep.env, fresh=contender.client == "flow"))
    return children


async def run_contender(
    contender: Contender, scenario: BenchScenario, line: StartLine, logs: Path,
    offsets: list[float], phase_s: float,
) -> RunOutcome:
    """Set up, meet every contender of the scenario at ``line``, run the load (``offsets`` from a
    start ``phase_s`` after the common one), count."""
    outcome = RunOutcome(contender, scenario)
    folder = Path(tempfile.mkdtemp(prefix=f"cmp-{scenario.name}-", dir=logs))
    outcome.offered = len(offsets)
    sim: SimProcess | None = None
    workers: list[Child] = []
    prep = None
    arrived = False
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            try:
                sim = await SimProcess.start(scenario.simulator)
                outcome.key_orgs = {k["name"]: k["org"] for k in sim.described["keys"]}
                prep = await prepare(contender, sim.described, sim.base_url, folder,
                                     f"bench-cmp-{uuid.uuid4().hex[:10]}")
                workers = await _spawn(contender, scenario, prep, sim.base_url, offsets, folder)
                outcome.processes = len(workers)
                await asyncio.gather(*(w.expect("ready", READY_TIMEOUT) for w in workers))
            except Exception as exc:
                outcome.error = f"set-up failed: {type(exc).__name__}: {exc or 'timed out'}"
            arrived = True
            await line.ready()
            if outcome.error is not None:
                await line.drained()
                return outcome
            assert sim is not None
            await _load(outcome, scenario, sim, session, workers, line, phase_s)
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
        if not arrived:
            await line.ready()
            await line.drained()
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
        if sim is not None:
            await sim.stop()
        for cleanup in prep.cleanups if prep else ():
            result = cleanup()
            if asyncio.iscoroutine(result):
                await result
        shutil.rmtree(folder, ignore_errors=True)
    return outcome


async def _drain(sim: SimProcess, session: aiohttp.ClientSession) -> None:
    """Empty every organization's request bucket, then forget the counts: the load meets a pool in
    steady state (as one that has been busy), not a minute's worth of rested capacity."""

    async def one(key: str, rpm: int) -> None:
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        body = {"model": "claude-sonnet-5-5", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
        for _ in range(rpm + 20):
            async with session.post(sim.base_url + "/v1/messages", json=body, headers=headers) as resp:
                await resp.read()
                if resp.status == 429:
                    return

    first: dict[str, str] = {}
    for k in sim.described["keys"]:
        first.setdefault(k["org"], k["key"])
    rpm = {o["id"]: int(o["limits"]["rpm"]) for o in sim.described["organizations"]}
    await asyncio.gather(*(one(key, rpm[org]) for org, key in first.items()))
    await sim.post(session, "/_sim/reset", {"counters": True, "buckets": False})


async def _cpu_at(pids: list[int], when: float) -> float:
    await asyncio.sleep(max(when - time.time(), 0.0))
    return tree_cpu_seconds(pids)


async def _load(outcome: RunOutcome, scenario: BenchScenario, sim: SimProcess,
                session: aiohttp.ClientSession, workers: list[Child], line: StartLine, phase_s: float) -> None:
    drained_at = None  # the bare client's unlimited key is not drained, and rests for nothing
    try:
        if outcome.contender.client != "bare":
            await _drain(sim, session)
            drained_at = time.time()
    finally:  # a failed drain still meets the others, who would wait for it forever
        start = await line.drained() + phase_s  # every window, snapshot and fault moves with it
    if drained_at is not None:
        outcome.rested_s = max(start - drained_at, 0.0)  # refill between the drain and the start
    health = await sim.get(session, "/_sim/health")
    outcome.sim_offset_s = float(health["elapsed_s"]) + (start - time.time())
    if scenario.faults and outcome.contender.client != "bare":
        await sim.post(session, "/_sim/faults", {"faults": scenario.fault_rules(outcome.sim_offset_s)})
    instants = [scenario.duration_s]
    if scenario.measure_from_s is not None:
        instants.append(scenario.measure_from_s)
    if scenario.fault_start is not None:
        # Taken just before the fault starts: a snapshot due at the instant would arrive a few ms
        # late and could hide a call the broken key received right after it.
        instants.append(max(scenario.fault_start - FAULT_SNAPSHOT_LEAD_S, 0.0))
    snapshots = Snapshots(sim, session, start, instants)
    pids = [w.pid for w in workers]
    cpu0 = tree_cpu_seconds(pids)
    for w in workers:
        w.send("go", start)
    snapshots.run()
    window_cpu = None
    if scenario.measure_from_s is not None:
        window_cpu = asyncio.create_task(_cpu_at(pids, start + scenario.measure_from_s))
    try:
        limit = scenario.duration_s * 3 + scenario.budget_s + 120  # the flow runs a batch past the load
        outcome.results = await asyncio.gather(*(w.expect("result", limit) for w in workers))
    finally:
        cpu_end = tree_cpu_seconds(pids)
        outcome.cpu_s = cpu_end - cpu0
        if window_cpu is not None:
            if window_cpu.done() and not window_cpu.cancelled():
                outcome.cpu_window_s = cpu_end - window_cpu.result()
            window_cpu.cancel()
        await snapshots.stop()
    outcome.samples = snapshots.samples
    outcome.stats = await sim.get(session, "/_sim/stats")
