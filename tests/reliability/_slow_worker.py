"""A worker process for the kill test: runs a batch of slow delegations from its environment, as a
Prefect flow run would, and is killed by the test in the middle of the calls."""

from __future__ import annotations

import asyncio
import sys

from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.batch import run_batch
from claude_pool.records.executions import ExecutionStore
from claude_pool.runtime import Runtime


async def main(count: int) -> None:
    runtime = Runtime.from_env()  # CLAUDE_POOL__capacity__leaseTimeoutSeconds comes in here
    requests = [
        DelegationRequest(organization_id="tenant-a", message=f"slow {i}", max_tokens=64)
        for i in range(count)
    ]
    async with Pool.open(runtime) as pool:
        await run_batch(pool, requests, concurrency=count, executions=ExecutionStore(runtime.db))
    print("finished: the test meant to kill this worker first", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
