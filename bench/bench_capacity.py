"""Capacity store latency and throughput: acquire + settle with 10, 100 and 1,000 candidates, on Redis
and on the embedded store, beside a plain Redis PING measured in the same run (the physical floor).

    .venv/bin/python bench/bench_capacity.py [--redis-url redis://127.0.0.1:6379/0] [--seconds 3]

Prints a table and writes bench/results/capacity.md.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from claude_pool.capacity import (
    BucketLimits,
    Candidate,
    CapacityStore,
    Demand,
    EmbeddedCapacityStore,
    RedisCapacityStore,
    Usage,
)

LIMITS = BucketLimits(rpm=10**9, itpm=10**12, otpm=10**12)  # never the bottleneck: we time the store
DEMAND = Demand(1000, 200)
SIZES = (10, 100, 1000)
CONCURRENCY = 16
RESULTS = Path(__file__).parent / "results" / "capacity.md"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def one_pair(store: CapacityStore, cands: list[Candidate]) -> None:
    sel = await store.acquire(cands, DEMAND)
    assert sel.reservation is not None
    await store.settle(sel.reservation, Usage(800, 100))


async def measure(store: CapacityStore, cands: list[Candidate], seconds: float) -> tuple[float, float, float]:
    """p50 and p99 of one sequential acquire+settle (ms), then pairs per second with CONCURRENCY tasks."""
    await one_pair(store, cands)  # warm: script load, file creation
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds / 2
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        await one_pair(store, cands)
        latencies.append(time.perf_counter() - t)
    done = 0
    deadline = time.perf_counter() + seconds / 2
    start = time.perf_counter()

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one_pair(store, cands)
            done += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return pct(latencies, 0.5), pct(latencies, 0.99), done / (time.perf_counter() - start)


async def ping_floor(url: str, n: int = 2000) -> tuple[float, float]:
    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            await client.ping()
            samples.append(time.perf_counter() - t)
        return pct(samples, 0.5), pct(samples, 0.99)
    finally:
        await client.aclose()


async def main(url: str, seconds: float) -> list[str]:
    rows = []
    p50, p99 = await ping_floor(url)
    rows.append(f"| Redis PING (floor) | - | {p50:.3f} | {p99:.3f} | - |")
    for n in SIZES:
        cands = [Candidate(f"acct-{k:04d}", f"acct-{k:04d}", LIMITS) for k in range(n)]
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        store = RedisCapacityStore.from_url(url, prefix=prefix)
        try:
            p50, p99, tput = await measure(store, cands, seconds)
        finally:
            await store.aclose()
            client = aioredis.Redis.from_url(url)
            keys = [k async for k in client.scan_iter(match="{" + prefix + "}*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()
        rows.append(f"| Redis acquire+settle | {n} | {p50:.3f} | {p99:.3f} | {tput:,.0f} |")
        print(rows[-1], flush=True)
    for n in SIZES:
        cands = [Candidate(f"acct-{k:04d}", f"acct-{k:04d}", LIMITS) for k in range(n)]
        with tempfile.TemporaryDirectory() as tmp:
            store = EmbeddedCapacityStore(Path(tmp) / "capacity.db")
            try:
                p50, p99, tput = await measure(store, cands, seconds)
            finally:
                await store.aclose()
        rows.append(f"| Embedded acquire+settle | {n} | {p50:.3f} | {p99:.3f} | {tput:,.0f} |")
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="per configuration (half latency, half throughput)"
    )
    args = parser.parse_args()
    table = asyncio.run(main(args.redis_url, args.seconds))
    header = [
        "| What | Candidates | p50 ms | p99 ms | pairs/s (16 concurrent) |",
        "|---|---:|---:|---:|---:|",
    ]
    print("\n".join(header + table))
    command = " ".join(["python", *sys.argv])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        "# Capacity store benchmark\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n"
        "One acquire (choice + reservation, one Lua call on Redis, one `BEGIN IMMEDIATE` transaction on\n"
        "SQLite) followed by one settle; latency is sequential, throughput has 16 tasks in one process.\n\n"
        + "\n".join(header + table)
        + "\n",
        encoding="utf-8",
    )
