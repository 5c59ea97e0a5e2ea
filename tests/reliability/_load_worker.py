"""One worker process of the load test: keeps ``concurrency`` delegations in flight for
``seconds``, recording each as an execution, and reports its counts, memory and descriptors as one
JSON line. Settings come from the environment, as in a Prefect worker."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections import Counter
from typing import Any

from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.batch import run_batch
from claude_pool.records.executions import ExecutionStore
from claude_pool.runtime import Runtime


def rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def main(index: int, concurrency: int, seconds: float) -> dict[str, Any]:
    # Thousands of per-call INFO lines would only spend the CPU the load needs.
    logging.getLogger("claude_pool").setLevel(logging.ERROR)
    runtime = Runtime.from_env()
    store = ExecutionStore(runtime.db)
    statuses: Counter[str] = Counter()
    samples: list[tuple[int, int, int]] = []  # (requests done, RSS kB, open descriptors)
    done = 0
    chunk = concurrency * 2
    samples.append((0, rss_kb(), open_fds()))  # before any pool or database connection
    try:
        async with Pool.open(runtime) as pool:
            end = time.monotonic() + seconds
            round_ = 0
            while time.monotonic() < end:
                requests = [
                    DelegationRequest(
                        organization_id="tenant-a",
                        message=f"worker {index} round {round_} request {i}: " + "load " * 20,
                        max_tokens=32,
                    )
                    for i in range(chunk)
                ]
                outcomes = await run_batch(
                    pool, requests, concurrency=concurrency, executions=store, max_wait_seconds=30
                )
                statuses.update(f"{o.status} {o.error_type or ''}".strip() for o in outcomes)
                done += len(outcomes)
                round_ += 1
                samples.append((done, rss_kb(), open_fds()))
    finally:
        runtime.close()
    samples.append((done, rss_kb(), open_fds()))  # after the pool and the database are closed
    return {"index": index, "requests": done, "statuses": dict(statuses), "samples": samples}


if __name__ == "__main__":
    index, concurrency, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(asyncio.run(main(index, concurrency, seconds))), flush=True)
