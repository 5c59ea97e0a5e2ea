"""What the benchmark measures with, outside the contenders: a simulator process of their own, its
ground-truth counters at the instants that matter, and the CPU time of the client processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from bench.compare.processes import Child, proc_table, receive, redirect_output, set_environment, start_child

__all__ = ["LIMIT_COUNTERS", "Sample", "SimProcess", "Snapshots", "serve_simulator", "tree_cpu_seconds"]

#: The simulator's counters of refusals by the organizations' limits (429 rate_limit_error).
LIMIT_COUNTERS = ("rejected_rate_limit_requests", "rejected_rate_limit_input_tokens", "rejected_rate_limit_output_tokens")


def serve_simulator(scenario: dict[str, Any], conn: Connection) -> None:
    """Child process: serve ``scenario`` on a free loopback port until told to exit (or orphaned)."""
    set_environment(dict(os.environ))
    redirect_output(None)
    asyncio.run(_serve_simulator(scenario, conn))


async def _serve_simulator(scenario: dict[str, Any], conn: Connection) -> None:
    from claude_pool.simulator import AnthropicSimulator, Scenario, SimulatorState
    from claude_pool.simulator.server import bind_socket, start_app

    state = SimulatorState(Scenario.from_dict(scenario))
    sock = bind_socket("127.0.0.1", 0)
    runner = await start_app(AnthropicSimulator(state).app(), sock)
    try:
        conn.send(("ready", {"base_url": f"http://127.0.0.1:{sock.getsockname()[1]}", **state.describe()}))
        with contextlib.suppress(EOFError):
            while (await receive(conn, None))[0] != "exit":
                pass
    finally:
        await runner.cleanup()


@dataclass
class SimProcess:
    """An Anthropic simulator of one contender's own, forked, on loopback."""

    child: Child
    base_url: str
    described: dict[str, Any]

    @classmethod
    async def start(cls, scenario: dict[str, Any]) -> SimProcess:
        child = start_child(serve_simulator, scenario)
        try:
            described = await child.expect("ready", 60)
        except BaseException:
            await child.stop()
            raise
        return cls(child, described["base_url"], described)

    async def get(self, session: aiohttp.ClientSession, path: str) -> dict[str, Any]:
        async with session.get(self.base_url + path) as resp:
            resp.raise_for_status()
            data: dict[str, Any] = await resp.json()
            return data

    async def post(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> None:
        async with session.post(self.base_url + path, json=body) as resp:
            resp.raise_for_status()

    async def stop(self) -> None:
        await self.child.stop()


@dataclass(frozen=True)
class Sample:
    t: float  # seconds from the load's start at which it was due (taken a few ms later)
    received: dict[str, int]
    served: dict[str, int]
    limited: int = 0  # the simulator's rate-limit refusals (429s from the limits) so far, all keys
    sim_s: float | None = None  # the simulator's own clock when it answered (its elapsed_s)


@dataclass
class Snapshots:
    """``/_sim/stats`` taken at given seconds from the load's start (the fault's start, the window's
    end): the figures need counts at those instants only, and the simulator's own last-call times."""

    sim: SimProcess
    session: aiohttp.ClientSession
    start: float
    at: list[float]
    samples: list[Sample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def run(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        for t in sorted(self.at):
            await asyncio.sleep(max(self.start + t - time.time(), 0.0))
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                stats = await self.sim.get(self.session, "/_sim/stats")
                keys = stats["keys"]
                self.samples.append(Sample(
                    t, {k: int(v["received"]) for k, v in keys.items()}, {k: int(v["served"]) for k, v in keys.items()},
                    sum(int(stats["total"][c]) for c in LIMIT_COUNTERS), float(stats["elapsed_s"]),
                ))

    async def stop(self) -> None:
        """Waits for the snapshots still due (the load has ended by then), then returns."""
        if self._task is not None:
            await self._task


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of these processes and all their descendants (Prefect's ephemeral server too)."""
    table = proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack, seen = 0.0, list(pids), set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        total += table[pid][1]
        stack.extend(children.get(pid, ()))
    return total
