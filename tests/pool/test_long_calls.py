"""A call that lasts longer than the lease period keeps its lease: it is not mistaken for a dead
worker's call, its in-flight slot is not handed to another caller, and its own usage settles it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from claude_pool.core.config import load_config
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.batch import run_batch
from claude_pool.records.executions import ExecutionStore
from claude_pool.simulator import OutputSpec, Scenario
from claude_pool.simulator.scenario import Latency

from .conftest import PoolWorld

LEASE_SECONDS = 0.6


def slow_world(make_world: Callable[..., PoolWorld]) -> PoolWorld:
    # 16 output tokens at 8 per second: a 2 s call, more than three lease periods.
    scenario = Scenario.uniform(
        1, latency=Latency(output_tokens_per_second=8), output=OutputSpec(mode="fixed", tokens=16)
    )
    config = load_config(None, env={"CLAUDE_POOL__capacity__leaseTimeoutSeconds": str(LEASE_SECONDS)})
    return make_world(scenario, config=config)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_a_call_longer_than_its_lease_keeps_its_slot(
    make_world: Callable[..., PoolWorld], stream: bool
) -> None:
    world = slow_world(make_world)
    world.runtime.accounts.update(world.account_ids["acct-1"], {"max_in_flight": 1})
    request = DelegationRequest(organization_id="tenant-a", message="Tell me a long story", max_tokens=64,
                                stream=stream)
    async with world.open_pool() as pool:
        candidates = [a.candidate for a in await pool.directory.all()]
        call = asyncio.create_task(pool.delegate(request))
        await asyncio.sleep(LEASE_SECONDS * 2.2)
        assert not call.done()
        assert await pool.capacity.reclaim_expired() == 0  # nothing to reclaim: the lease was renewed
        assert (await pool.capacity.view(candidates))[0].in_flight == 1
        result = await call
        assert result.usage.output_tokens == 16
        assert [a.outcome for a in result.attempts] == ["success"]
        assert (await pool.capacity.view(candidates))[0].in_flight == 0


async def test_a_long_call_is_not_reaped_as_a_dead_workers(make_world: Callable[..., PoolWorld]) -> None:
    """The execution row beats while its call runs: the reaper (rows silent for a lease period end
    as crashed) leaves it alone, and it ends succeeded without ever having been "crashed"."""
    world = slow_world(make_world)
    store = ExecutionStore(world.runtime.db)
    request = DelegationRequest(organization_id="tenant-a", message="Tell me a long story", max_tokens=64)
    async with world.open_pool() as pool:
        batch = asyncio.create_task(run_batch(pool, [request], concurrency=1, executions=store))
        reaped = []
        for _ in range(4):  # the reaper runs every half lease period during the 2 s call
            await asyncio.sleep(LEASE_SECONDS / 2)
            reaped.append(await asyncio.to_thread(store.reap_stale, older_than=timedelta(seconds=LEASE_SECONDS)))
        (outcome,) = await batch
    assert reaped == [0, 0, 0, 0]
    assert outcome.status == "succeeded"
    row = store.get(outcome.execution_id)
    assert row.status == "succeeded" and row.error_type is None
