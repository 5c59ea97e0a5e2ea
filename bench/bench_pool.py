"""What the pool costs over calling Anthropic directly: ``Pool.delegate`` on the embedded store and on
Redis, beside the bare ``anthropic.AsyncAnthropic`` client with one key, in the same run, against one
simulator (its own process, no added latency, limits far above the load).

    .venv/bin/python bench/bench_pool.py [--redis-url redis://127.0.0.1:6379/0] [--seconds 6] [--concurrency 32]

For each contender: latency with one call at a time (p50/p99 of the wall time), then calls per
second with ``--concurrency`` tasks in one process. For the pool, the added latency of each call is
its ``delegate`` wall time minus the upstream call inside it (``AttemptRecord.latency_ms``: the same
client call the baseline makes), i.e. selection, reservation, breaker, settlement and calibration.
Prints a table and writes bench/results/pool.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import redis

from claude_pool.core.config import load_config
from claude_pool.core.settings import Secret, Settings
from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.runtime import Runtime

RESULTS = Path(__file__).parent / "results" / "pool.md"
MESSAGE = "Summarise the pooling of accounts in one short sentence, please."
MAX_TOKENS = 64
SCENARIO: dict[str, Any] = {
    "seed": 1,
    "uniform": {"accounts": 3, "rpm": 10_000_000, "itpm": 10_000_000_000, "otpm": 1_000_000_000},
    "output": {"mode": "fixed", "tokens": 16},
}


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Row:
    name: str
    p50_ms: float
    p99_ms: float
    rate: float
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    added_p50_loaded_ms: float | None = None
    added_p99_loaded_ms: float | None = None


# One call: returns (wall seconds, upstream seconds inside it or None for the bare client).
Call = Callable[[int], Awaitable[tuple[float, float | None]]]


async def measure(name: str, call: Call, seconds: float, concurrency: int) -> Row:
    for i in range(20):  # warm: connections, scripts, caches
        await call(i)
    walls: list[float] = []
    added: list[float] = []
    deadline = time.perf_counter() + seconds / 3
    i = 0
    while time.perf_counter() < deadline:
        i += 1
        wall, upstream = await call(i)
        walls.append(wall)
        if upstream is not None:
            added.append(wall - upstream)
    done = 0
    loaded_added: list[float] = []
    deadline = time.perf_counter() + seconds * 2 / 3

    async def worker(w: int) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            wall, upstream = await call(w * 1_000_000 + n)
            done += 1
            if upstream is not None:
                loaded_added.append(wall - upstream)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    rate = done / (time.perf_counter() - started)
    row = Row(name, pct(walls, 0.5) * 1000, pct(walls, 0.99) * 1000, rate)
    if added:
        row.added_p50_ms, row.added_p99_ms = pct(added, 0.5) * 1000, pct(added, 0.99) * 1000
        row.added_p50_loaded_ms = pct(loaded_added, 0.5) * 1000
        row.added_p99_loaded_ms = pct(loaded_added, 0.99) * 1000
    return row


async def bare_client(base_url: str, key: str, seconds: float, concurrency: int) -> Row:
    client = anthropic.AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0)
    try:

        async def call(i: int) -> tuple[float, float | None]:
            t = time.perf_counter()
            await client.messages.create(
                model="claude-sonnet-5-5",
                max_tokens=MAX_TOKENS,
                messages=[{"role": "user", "content": f"{MESSAGE} #{i}"}],
            )
            return time.perf_counter() - t, None

        return await measure("bare AsyncAnthropic, one key (baseline)", call, seconds, concurrency)
    finally:
        await client.close()


async def pool_run(name: str, settings: Settings, seconds: float, concurrency: int) -> Row:
    runtime = Runtime(settings=settings, config=load_config(None, env={}))
    try:
        async with Pool.open(runtime) as pool:

            async def call(i: int) -> tuple[float, float | None]:
                request = DelegationRequest(
                    organization_id="bench", message=f"{MESSAGE} #{i}", max_tokens=MAX_TOKENS
                )
                t = time.perf_counter()
                result = await pool.delegate(request)
                wall = time.perf_counter() - t
                return wall, sum(a.latency_ms for a in result.attempts) / 1000

            return await measure(name, call, seconds, concurrency)
    finally:
        runtime.close()


def register(settings: Settings, described: dict[str, Any]) -> None:
    runtime = Runtime(settings=settings, config=load_config(None, env={}))
    try:
        runtime.db.upgrade()
        limits = {o["id"]: o["limits"] for o in described["organizations"]}
        for key in described["keys"]:
            lim = limits[key["org"]]
            runtime.accounts.register(
                {
                    "organization_id": "bench",
                    "name": key["name"],
                    "tier": "pro",
                    "api_key": key["key"],
                    "requests_per_minute": lim["rpm"],
                    "input_tokens_per_minute": lim["itpm"],
                    "output_tokens_per_minute": lim["otpm"],
                }
            )
    finally:
        runtime.close()


def start_simulator(where: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    path = where / "scenario.json"
    path.write_text(json.dumps(SCENARIO), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_pool", "simulate", "--scenario", str(path), "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise SystemExit("the simulator did not start")
    return proc, json.loads(line)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: list[Row], concurrency: int) -> str:
    lines = [
        f"| What | p50 ms | p99 ms | calls/s ({concurrency} concurrent) | vs baseline | added p50 / p99 ms "
        f"(1 at a time) | added p50 / p99 ms ({concurrency} concurrent) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = rows[0].rate
    for r in rows:
        lines.append(
            f"| {r.name} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.rate:,.0f} | {r.rate / base:.0%} | "
            f"{fmt(r.added_p50_ms)} / {fmt(r.added_p99_ms)} | "
            f"{fmt(r.added_p50_loaded_ms)} / {fmt(r.added_p99_loaded_ms)} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-pool-") as tmp:
        where = Path(tmp)
        proc, described = start_simulator(where)
        prefix = f"bench-pool-{uuid.uuid4().hex[:8]}"
        key = Secret(os.urandom(32).hex())
        try:
            base_url = described["base_url"]
            rows.append(
                await bare_client(base_url, described["keys"][0]["key"], args.seconds, args.concurrency)
            )
            for name, redis_url in (
                ("Pool.delegate, embedded store", None),
                ("Pool.delegate, Redis", args.redis_url),
            ):
                home = where / ("redis" if redis_url else "embedded")
                settings = Settings(
                    home=home,
                    database_url=f"sqlite:///{home / 'claude-pool.db'}",
                    redis_url=redis_url,
                    redis_prefix=prefix,
                    encryption_key=key,
                    anthropic_base_url=base_url,
                    log_file=None,
                )
                register(settings, described)
                rows.append(await pool_run(name, settings, args.seconds, args.concurrency))
            # the baseline again, last: the machine's load drifts, and the two rows show by how much
            again = await bare_client(base_url, described["keys"][0]["key"], args.seconds, args.concurrency)
            again.name = "bare AsyncAnthropic again (drift check)"
            rows.append(again)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
            client = redis.Redis.from_url(args.redis_url)
            stale = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
            if stale:
                client.delete(*stale)
            client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="per contender (1/3 sequential, 2/3 loaded)"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    logging.getLogger("claude_pool").setLevel(logging.ERROR)  # one INFO line per call would be timed too
    rows = asyncio.run(main_async(args))
    out = table(rows, args.concurrency)
    print(out)
    command = "python bench/bench_pool.py" + "".join(
        f" --{k.replace('_', '-')} {v}"
        for k, v in (("seconds", args.seconds), ("concurrency", args.concurrency))
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        "# Pool benchmark\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n"
        "One simulator in its own process (no added latency, limits far above the load, 16-token answers), "
        "one load process. Latency: one call at a time. Throughput: the given number of concurrent tasks. "
        "The baseline is the bare `anthropic.AsyncAnthropic` client with one key, same simulator, same run, "
        "measured first and again last (the gap between the two is the noise of the machine). "
        "Added latency is each `delegate` call's wall time minus the upstream call inside it "
        "(`AttemptRecord.latency_ms`): selection, reservation, breaker, settlement, calibration.\n\n"
        f"{out}\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
