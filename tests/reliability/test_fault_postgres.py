"""PostgreSQL unreachable while results are being recorded: a result already obtained from
Anthropic is not lost, and lands exactly once when the database is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.batch import run_batch
from claude_pool.records.executions import ExecutionStore
from claude_pool.simulator import Latency, Scenario
from tests.reliability.conftest import TENANT, execution_rows
from tests.reliability.netfaults import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CALL_SECONDS = 1.5  # every call is in flight this long: the outage starts while they are
OUTAGE_SECONDS = 4.0


async def test_results_obtained_while_postgres_is_down_are_recorded_once_when_it_is_back(
    fresh_postgres_url: str,
    proxy_factory: Callable[[str, int], TcpProxy],
    sim_world: Callable[..., Any],
) -> None:
    proxy = proxy_factory("127.0.0.1", 5432)
    through_proxy = fresh_postgres_url.replace("127.0.0.1:5432", proxy.address)
    assert through_proxy != fresh_postgres_url
    scenario = Scenario.uniform(
        accounts=2,
        rpm=100_000,
        itpm=100_000_000,
        otpm=10_000_000,
        latency=Latency(ttft_ms=CALL_SECONDS * 1000),
    )
    runtime, sim, _ = sim_world(scenario, database_url=through_proxy)
    # 12 at once are in flight when the database goes away; 12 more start during the outage
    requests = [
        DelegationRequest(
            organization_id=TENANT, message=f"request {i}", max_tokens=16, idempotency_key=f"k{i}"
        )
        for i in range(24)
    ]

    async def outage() -> None:
        await asyncio.sleep(CALL_SECONDS / 3)
        proxy.cut()
        await asyncio.sleep(OUTAGE_SECONDS)
        proxy.restore()

    started = time.monotonic()
    async with Pool.open(runtime) as pool:
        outcomes, _ = await asyncio.gather(
            run_batch(pool, requests, concurrency=12, executions=ExecutionStore(runtime.db)), outage()
        )
    elapsed = time.monotonic() - started

    rows = execution_rows(runtime)
    served = sim.stats().total["served"]
    print(f"\n[postgres outage {OUTAGE_SECONDS:.0f}s] {len(rows)} rows, {served} served, {elapsed:.1f}s")
    # every request has exactly one row, and every row ended
    assert len(outcomes) == len(requests) == len(rows)
    assert sorted(o.execution_id for o in outcomes) == sorted(r[0] for r in rows)
    assert {r[1] for r in rows} <= {"succeeded", "failed"}
    # every result Anthropic gave was recorded as a success: none lost while the database was away
    succeeded = [r for r in rows if r[1] == "succeeded"]
    assert len(succeeded) == served
    # the calls in flight when the database went away all came back and were all recorded
    assert served >= 12
    # requests that could not run during the outage say why (the database), nothing else
    assert {r[2] for r in rows if r[1] == "failed"} <= {"StorageError"}
    assert sim.stats().total["received"] == served  # nothing was sent twice
