"""A delegation that fails on every account is recorded with each account's answer, not only the
last: the row (and so the run's artifact) says why each one failed."""

from __future__ import annotations

from collections.abc import Callable

from claude_pool.core.config import Strategy
from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.recorded import record_delegation
from claude_pool.simulator import FaultRule

from .conftest import RecordsWorld


async def test_a_failure_on_every_account_records_every_attempt(
    records_world: Callable[..., RecordsWorld],
) -> None:
    world = records_world()
    world.sim.add_fault(FaultRule(kind="error", status=500))
    request = DelegationRequest(
        organization_id="tenant-a", message="hello", max_tokens=16, strategy=Strategy.ROUND_ROBIN
    )
    async with Pool.open(world.runtime) as pool:
        recorded = await record_delegation(pool, world.executions, request)
        again = await record_delegation(pool, world.executions, request.model_copy())
    execution = recorded.execution
    assert execution.status == "failed" and execution.attempts == 2
    tried = [(a["account_id"], a["status_code"]) for a in execution.attempt_details]
    assert sorted(tried) == sorted((account_id, 500) for account_id in world.account_ids.values())
    # each request keeps its own trail: the second's attempts are its own, not added to the first's
    assert again.execution.attempts == 2
