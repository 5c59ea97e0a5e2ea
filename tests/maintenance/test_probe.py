"""``probe_account`` against the Anthropic simulator: a revoked key is marked invalid, a healthy
account stays active, and one whose key works again (or whose circuit was tripped) is let back in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from claude_pool.maintenance import probe_account
from claude_pool.pool import Pool
from claude_pool.simulator import Scenario
from claude_pool.storage import AccountStatus
from tests.plugins.runtimes import SimulatedRuntime


@dataclass
class ProbeWorld:
    world: SimulatedRuntime
    pool: Pool

    def id_of(self, name: str) -> str:
        return self.world.account_ids[name]

    def status_of(self, name: str) -> str:
        return self.world.runtime.accounts.get(self.id_of(name)).status

    def calls_to(self, name: str) -> tuple[int, int]:
        """(count_tokens calls, messages served) the simulator saw from this key."""
        counts = self.world.sim.stats().key(name)
        return counts["count_tokens"], counts["served"]


@pytest.fixture
async def probing(
    simulated_runtime_factory: Callable[..., SimulatedRuntime],
) -> AsyncIterator[ProbeWorld]:
    world = simulated_runtime_factory(
        Scenario.uniform(accounts=2, rpm=10_000, itpm=10_000_000, otpm=2_000_000)
    )
    async with Pool.open(world.runtime) as pool:
        yield ProbeWorld(world, pool)


async def test_a_healthy_account_stays_active_and_costs_no_message(probing: ProbeWorld) -> None:
    result = await probe_account(probing.pool, probing.id_of("acct-1"))
    assert result.ok and result.outcome == "success" and result.detail == ""
    assert (result.status_before, result.status_after) == ("active", "active")
    assert (result.breaker_before, result.breaker_after) == ("closed", "closed")
    assert result.account_name == "acct-1"
    assert probing.status_of("acct-1") == AccountStatus.ACTIVE
    assert probing.calls_to("acct-1") == (1, 0)  # counted tokens; no message was generated


async def test_a_revoked_key_is_marked_invalid(probing: ProbeWorld) -> None:
    probing.world.sim.revoke("acct-1")
    result = await probe_account(probing.pool, probing.id_of("acct-1"))
    assert not result.ok and result.outcome == "bad_credentials" and result.detail
    assert (result.status_before, result.status_after) == ("active", "invalid_credentials")
    assert probing.status_of("acct-1") == AccountStatus.INVALID_CREDENTIALS
    # the pool no longer offers it, and the other account is untouched
    offered = {a.id: a.status for a in await probing.pool.directory.all()}
    assert offered[probing.id_of("acct-1")] == AccountStatus.INVALID_CREDENTIALS
    assert probing.status_of("acct-2") == AccountStatus.ACTIVE
    for key in probing.world.api_keys:
        assert key not in repr(result)


async def test_a_key_that_works_again_is_let_back_in(probing: ProbeWorld) -> None:
    probing.world.sim.revoke("acct-1")
    await probe_account(probing.pool, probing.id_of("acct-1"))
    assert probing.status_of("acct-1") == AccountStatus.INVALID_CREDENTIALS

    probing.world.sim.restore("acct-1")
    result = await probe_account(probing.pool, probing.id_of("acct-1"))
    assert result.ok
    assert (result.status_before, result.status_after) == ("invalid_credentials", "active")
    assert probing.status_of("acct-1") == AccountStatus.ACTIVE


async def test_a_probe_closes_a_tripped_circuit_whose_timeout_has_passed(probing: ProbeWorld) -> None:
    account = probing.id_of("acct-2")
    await probing.pool.breaker.force_open(account, "five failures in a row", seconds=0)  # already due
    result = await probe_account(probing.pool, account)
    assert result.ok
    assert (result.breaker_before, result.breaker_after) == ("half_open", "closed")
    assert (await probing.pool.breaker.state(account)).state.value == "closed"


async def test_a_probe_leaves_a_circuit_not_yet_due_open(probing: ProbeWorld) -> None:
    account = probing.id_of("acct-2")
    await probing.pool.breaker.force_open(account, "five failures in a row", seconds=3600)
    result = await probe_account(probing.pool, account)
    assert result.ok  # the key itself is fine...
    assert (result.breaker_before, result.breaker_after) == ("open", "open")  # ...the circuit waits


async def test_a_message_probe_sends_one_token_message(probing: ProbeWorld) -> None:
    result = await probe_account(probing.pool, probing.id_of("acct-2"), method="message")
    assert result.ok
    assert probing.calls_to("acct-2") == (0, 1)
