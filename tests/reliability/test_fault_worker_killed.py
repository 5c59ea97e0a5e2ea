"""A worker killed (SIGKILL) in the middle of its calls: its leases expire and are reclaimed, its
executions end as ``crashed`` at the next sweep, and nothing stays ``running``."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from claude_pool.pool import Pool
from claude_pool.records.executions import ExecutionStore
from claude_pool.simulator import Latency, Scenario
from tests.plugins.processes import python_module, wait_while_running
from tests.plugins.stores import StoreBackend
from tests.reliability.conftest import execution_rows

pytestmark = pytest.mark.slow

LEASE_SECONDS = 2
CALLS = 4
ROOT = Path(__file__).resolve().parents[2]


async def test_a_worker_killed_mid_call_has_its_leases_reclaimed_and_its_executions_end_as_crashed(
    store_backend: StoreBackend, sim_world: Callable[..., Any], encryption_key: str, tmp_path: Path
) -> None:
    # calls that take a minute: the worker is surely killed while they are in flight
    scenario = Scenario.uniform(
        accounts=2, rpm=10_000, itpm=10_000_000, otpm=1_000_000, latency=Latency(ttft_ms=60_000)
    )
    config = {"capacity": {"leaseTimeoutSeconds": LEASE_SECONDS}}
    runtime, sim, _ = sim_world(
        scenario, extra={"max_in_flight": CALLS}, config=config, **store_backend.settings
    )
    settings = runtime.settings
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_POOL", "REDIS", "DATABASE"))},
        **store_backend.env,
        "CLAUDE_POOL_HOME": str(settings.home),
        "DATABASE_URL": settings.database_url,
        "ENCRYPTION_KEY": encryption_key,
        "ANTHROPIC_BASE_URL": sim.base_url,
        "CLAUDE_POOL_CONFIG": str(tmp_path / "no-config.json"),
        "CLAUDE_POOL__capacity__leaseTimeoutSeconds": str(LEASE_SECONDS),
        "CLAUDE_POOL__capacity__coldStart": "full",  # no calibration probe among the calls counted
        "LOG_FILE": str(tmp_path / "worker.log"),
    }
    worker = python_module("tests.reliability._slow_worker", str(CALLS), env=env, cwd=ROOT)
    try:
        await asyncio.to_thread(
            wait_while_running,
            worker,
            lambda: sim.stats().total["received"] >= CALLS or None,
            what="every call is in flight upstream",
            timeout=60,
            every=0.05,
        )
        running = [r for r in execution_rows(runtime) if r[1] == "running"]
        assert len(running) == CALLS
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        out, err = worker.communicate()
    assert worker.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert b"finished" not in out

    store = ExecutionStore(runtime.db)
    async with Pool.open(runtime) as pool:
        accounts = await pool.directory.all()
        before = await pool.capacity.view([a.candidate for a in accounts])
        assert sum(v.in_flight for v in before) == CALLS  # the dead worker still holds its slots
        assert store.reap_stale(older_than=timedelta(seconds=LEASE_SECONDS)) == 0  # not yet: too early
        await asyncio.sleep(LEASE_SECONDS + 0.5)  # on purpose: the leases must outlive their timeout
        # what the capacity_sync flow does every minute (reclaim_expired_leases, reap_stale_executions)
        reclaimed = await pool.capacity.reclaim_expired()
        crashed = store.reap_stale(older_than=timedelta(seconds=LEASE_SECONDS))
        after = await pool.capacity.view([a.candidate for a in accounts])
    rows = execution_rows(runtime)
    print(
        f"\n[{store_backend.name}] reclaimed {reclaimed} leases, {crashed} executions crashed"
    )
    assert reclaimed == CALLS and crashed == CALLS
    assert sum(v.in_flight for v in after) == 0
    assert [r[1:3] for r in rows] == [("crashed", "WorkerLost")] * CALLS
    assert store.reap_stale(older_than=timedelta(seconds=LEASE_SECONDS)) == 0  # and it ends there
