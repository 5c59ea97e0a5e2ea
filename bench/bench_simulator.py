"""How many requests per second the Anthropic simulator answers on this machine, next to a bare aiohttp
"hello" server measured the same way in the same run.

Each server runs alone in its own process; the load comes from this process over raw keep-alive
sockets (a minimal HTTP/1.1 client, far cheaper per request than aiohttp's or httpx's, so the figure
is the server's and not the client's). Servers are measured alternately, several rounds, median kept.

    .venv/bin/python bench/bench_simulator.py [--seconds 4] [--connections 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "simulator.md"
BODY = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "hello there"}]}


# ---- servers (child processes) -------------------------------------------------------------------


def _serve_hello(port_queue: mp.Queue) -> None:  # type: ignore[type-arg]
    from aiohttp import web

    from claude_pool.simulator.server import bind_socket, start_app

    payload = json.dumps({"ok": True, "text": "hello"}).encode()

    async def hello(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=payload, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", hello)
        sock = bind_socket("127.0.0.1", 0)
        await start_app(app, sock)
        port_queue.put(sock.getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _serve_simulator(port_queue: mp.Queue) -> None:  # type: ignore[type-arg]
    from claude_pool.simulator import AnthropicSimulator, Scenario, SimulatorState
    from claude_pool.simulator.server import bind_socket, start_app

    # Limits far above what the run can reach: we measure serving, not refusing.
    scenario = Scenario.uniform(accounts=3, rpm=10**9, itpm=10**12, otpm=10**12, seed=0)

    async def main() -> None:
        sock = bind_socket("127.0.0.1", 0)
        await start_app(AnthropicSimulator(SimulatorState(scenario)).app(), sock)
        port_queue.put(sock.getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


# ---- load (this process) -------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection sending the same request again as soon as the answer is complete."""

    def __init__(self, request: bytes, statuses: Counter[int], stop_at: list[float]) -> None:
        self.request = request
        self.statuses = statuses
        self.stop_at = stop_at
        self.buf = bytearray()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            if b"transfer-encoding: chunked" in head:
                stop = self.buf.find(b"\r\n0\r\n\r\n", end)
                if stop < 0:
                    return
                size = stop + 7
            else:
                i = head.index(b"content-length:") + 15
                size = end + 4 + int(head[i : head.index(b"\r\n", i) if b"\r\n" in head[i:] else len(head)])
                if len(self.buf) < size:
                    return
            self.statuses[int(head[9:12])] += 1
            del self.buf[:size]
            assert self.transport is not None
            if time.monotonic() >= self.stop_at[0]:
                self.transport.close()
                return
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _load(port: int, request: bytes, connections: int, seconds: float) -> tuple[float, Counter[int]]:
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()
    stop_at = [time.monotonic() + seconds]
    start = time.monotonic()
    conns = [
        (await loop.create_connection(lambda: _Conn(request, statuses, stop_at), "127.0.0.1", port))[1]
        for _ in range(connections)
    ]
    await asyncio.gather(*(c.closed for c in conns))
    elapsed = time.monotonic() - start
    return sum(statuses.values()) / elapsed, statuses


def _request(key: str, stream: bool) -> bytes:
    body = json.dumps({**BODY, "stream": stream} if stream else BODY).encode()
    head = (
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nanthropic-version: 2026-10-21\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _start(target: object) -> tuple[mp.process.BaseProcess, int]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(queue,), daemon=True)
    proc.start()
    return proc, int(queue.get(timeout=60))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/simulator.md")
    args = parser.parse_args()

    from claude_pool.simulator import Scenario

    key = Scenario.uniform(accounts=3, seed=0).keys[0].key
    targets = {
        "bare aiohttp hello (baseline)": (_serve_hello, _request(key, False)),
        "simulator, POST /v1/messages": (_serve_simulator, _request(key, False)),
        "simulator, stream: true (SSE)": (_serve_simulator, _request(key, True)),
    }
    servers = {name: _start(target) for name, (target, _) in targets.items()}
    figures: dict[str, list[float]] = {name: [] for name in targets}
    failures: Counter[str] = Counter()
    try:
        for name, (_, request) in targets.items():  # warm-up, not counted
            asyncio.run(_load(servers[name][1], request, args.connections, 0.5))
        for _ in range(args.rounds):
            for name, (_, request) in targets.items():
                rps, statuses = asyncio.run(_load(servers[name][1], request, args.connections, args.seconds))
                figures[name].append(rps)
                failures[name] += sum(n for status, n in statuses.items() if status != 200)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.join(5)

    baseline = statistics.median(figures["bare aiohttp hello (baseline)"])
    rows = []
    for name, values in figures.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:,.0f}" for v in values)
        rows.append(f"| {name} | {median:,.0f} | {median / baseline:.0%} | {runs} | {failures[name]} |")
    table = "\n".join(
        ["| server | requests/s (median) | vs baseline | each round | non-200 |", "|---|---:|---:|---|---:|", *rows]
    )
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"
    print(table)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            "# Simulator throughput\n\n"
            f"`{' '.join([Path(sys.executable).name, *sys.argv])}` on {time.strftime('%Y-%m-%d')}, {machine}.\n\n"
            f"{args.connections} keep-alive connections from one load process (raw sockets), each server alone in "
            f"its own process, {args.rounds} alternating rounds of {args.seconds:g} s after a warm-up; no added "
            "latency, limits far above the load. The baseline is a bare aiohttp handler that reads the body and "
            "answers a fixed JSON, run the same way in the same run.\n\n"
            f"{table}\n\n"
            "Both servers and the load generator share the machine's cores, so the absolute figures depend on it; "
            "the ratio to the baseline is the number to watch. For scale: a tier-4 organization's 4,000 RPM is "
            "67 requests/s, so one simulator process serves on the order of a hundred such organizations at "
            "full rate before it becomes the bottleneck of a pool benchmark.\n"
        )
        print(f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
