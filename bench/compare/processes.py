"""Child processes of the benchmark, started cheaply and talked to over a pipe.

A run needs well over a hundred processes (a simulator per contender per scenario, and the
contenders' workers). Started as fresh interpreters, each would spend 2 to 4 s of CPU importing
LiteLLM, the SDKs and claude-pool before doing anything: minutes of start-up on two cores. So
they are forked from one multiprocessing fork server that has imported all of that once; a fork
costs milliseconds. Only Prefect is kept out of it: Prefect reads its settings (PREFECT_HOME, ...)
when imported, and each flow worker needs its own, so that contender starts a fresh interpreter.

Messages are small picklable tuples: ``("ready",)``, ``("go", epoch)``, ``("result", {...})``,
``("exit",)``, ``("error", text)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")

__all__ = ["Child", "proc_table", "receive", "redirect_output", "run_to_end", "set_environment", "start_child", "warm_up"]

#: What every forked child should find already imported.
_PRELOAD = [
    "aiohttp",
    "anthropic",
    "redis.asyncio",
    "claude_pool.simulator",
    "claude_pool.pool",
    "claude_pool.runtime",
    "claude_pool.pool.models",
    "claude_pool.accounts.registry",
    "bench.compare.clients",
    "bench.compare.measure",
    "bench.compare.worker",
    "bench.compare.contenders",
    "bench.compare.run",
    "bench.compare.figures",
    "bench.compare.report",
]

_FORKED = multiprocessing.get_context("forkserver")
_FRESH = multiprocessing.get_context("spawn")


def warm_up(*, litellm: bool) -> None:
    """Start the fork server now (it imports everything once); later children fork from it."""
    # LiteLLM reads this at import: its price map comes from the wheel, not a download.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    _FORKED.set_forkserver_preload(_PRELOAD + (["litellm", "litellm.router"] if litellm else []))
    probe = _FORKED.Process(target=_nothing)
    probe.start()
    probe.join()


def _nothing() -> None:
    return None


def set_environment(env: dict[str, str]) -> None:
    """A child's own environment (its claude-pool home, database, Redis prefix, ...).

    Called first in every forked child: it also sets aside, for the garbage collector, everything
    the fork server imported. Otherwise each collection in a claude-pool worker would walk
    LiteLLM's objects too, and its CPU per request would carry a cost that is not its own.
    """
    gc.freeze()
    os.environ.clear()
    os.environ.update(env)


def redirect_output(path: str | None) -> None:
    """A child's stdout and stderr into its own log file (or nowhere), not the table's terminal."""
    fd = os.open(path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


async def receive(conn: Connection, timeout: float | None) -> Any:
    """The next message on ``conn``, without blocking the event loop; EOFError when the peer is gone."""
    loop = asyncio.get_running_loop()
    if not conn.poll():
        readable = loop.create_future()
        fd = conn.fileno()
        loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
        try:
            await asyncio.wait_for(readable, timeout)
        finally:
            loop.remove_reader(fd)
    return conn.recv()


@dataclass
class Child:
    process: BaseProcess
    conn: Connection

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    async def expect(self, kind: str, timeout: float) -> Any:
        """The payload of the next message, which must be ``kind``."""
        try:
            message = await receive(self.conn, timeout)
        except TimeoutError:
            raise TimeoutError(f"no {kind!r} from child {self.pid} in {timeout:.0f}s") from None
        except EOFError:
            await self.wait(5.0)
            raise RuntimeError(
                f"child {self.pid} ended (exit {self.process.exitcode}) before {kind!r}"
            ) from None
        if message[0] == "error":
            raise RuntimeError(f"child {self.pid}: {message[1]}")
        if message[0] != kind:
            raise RuntimeError(f"child {self.pid} sent {message[0]!r}, expected {kind!r}")
        return message[1] if len(message) > 1 else None

    def send(self, *message: Any) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(message)

    async def wait(self, timeout: float) -> bool:
        """True once the process has ended (waiting on its sentinel, not a thread)."""
        if self.process.exitcode is not None:
            return True
        loop = asyncio.get_running_loop()
        ended = loop.create_future()
        sentinel = self.process.sentinel
        loop.add_reader(sentinel, lambda: ended.done() or ended.set_result(None))
        try:
            await asyncio.wait_for(ended, timeout)
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(sentinel)
        self.process.join(0)
        return True

    async def stop(self, grace: float = 5.0) -> None:
        """Ask it to exit, then terminate, then kill; always reaped and its pipe closed. What it
        started itself (Prefect's ephemeral server) is terminated too, not left orphaned."""
        below = _descendants(self.pid) if self.process.exitcode is None else []
        self.send("exit")
        if not await self.wait(1.0):
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            if not await self.wait(grace):
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.wait(grace)
        self.conn.close()
        with contextlib.suppress(ValueError):
            self.process.close()
        for pid in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)


def proc_table() -> dict[int, tuple[int, float]]:
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


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, theirs, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for child, (parent, _cpu) in proc_table().items():
        children.setdefault(parent, []).append(child)
    found, stack = [], [pid]
    while stack:
        below = children.get(stack.pop(), [])
        found += below
        stack += below
    return found


def start_child(target: Callable[..., Any], *args: Any, fresh: bool = False) -> Child:
    """Fork ``target(*args, conn)`` from the fork server (or, ``fresh``, start a new interpreter)."""
    context = _FRESH if fresh else _FORKED
    ours, theirs = context.Pipe()
    process = context.Process(target=target, args=(*args, theirs), daemon=True)
    process.start()
    theirs.close()
    return Child(process, ours)


async def run_to_end(child: Child, timeout: float) -> Any:
    """Wait for a one-shot child's ``("done", ...)``, then reap it."""
    try:
        return await child.expect("done", timeout)
    finally:
        await child.stop()
