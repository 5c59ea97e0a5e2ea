"""What the benchmark measures with, outside the contenders: a simulator process of their own, its
ground-truth counters sampled every 100 ms, and the CPU time of the client processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["Sample", "SimProcess", "StatsPoller", "stop_process", "tree_cpu_seconds"]

_TICK = os.sysconf("SC_CLK_TCK")


async def stop_process(proc: asyncio.subprocess.Process, *, grace: float = 5.0) -> None:
    """Terminate, then kill after ``grace`` seconds; always reaped, its pipes closed."""
    if proc.stdin is not None:
        proc.stdin.close()
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


@dataclass
class SimProcess:
    """``python -m claude_pool simulate --scenario FILE --port 0 --json`` on loopback."""

    proc: asyncio.subprocess.Process
    base_url: str
    described: dict[str, Any]

    @classmethod
    async def start(cls, scenario: dict[str, Any], folder: Path) -> SimProcess:
        path = folder / "simulator.json"
        path.write_text(json.dumps(scenario), encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-u", "-m", "claude_pool", "simulate", "--scenario", str(path),
            "--host", "127.0.0.1", "--port", "0", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 180)
            described = json.loads(line)
        except BaseException:
            await stop_process(proc)
            raise
        return cls(proc, described["base_url"], described)

    async def get(self, session: aiohttp.ClientSession, path: str) -> dict[str, Any]:
        async with session.get(self.base_url + path) as resp:
            resp.raise_for_status()
            data: dict[str, Any] = await resp.json()
            return data

    async def post(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> None:
        async with session.post(self.base_url + path, json=body) as resp:
            resp.raise_for_status()

    async def stop(self) -> None:
        await stop_process(self.proc)


@dataclass(frozen=True)
class Sample:
    t: float  # seconds from the load's start
    received: dict[str, int]
    served: dict[str, int]


@dataclass
class StatsPoller:
    """Samples ``/_sim/stats`` every ``interval`` seconds until stopped."""

    sim: SimProcess
    session: aiohttp.ClientSession
    start: float
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def run(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                stats = await self.sim.get(self.session, "/_sim/stats")
                keys = stats["keys"]
                self.samples.append(
                    Sample(
                        time.time() - self.start,
                        {k: int(v["received"]) for k, v in keys.items()},
                        {k: int(v["served"]) for k, v in keys.items()},
                    )
                )
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used by it, user + system), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return table


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of these processes and all their descendants (Prefect's ephemeral server too)."""
    table = _proc_table()
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
