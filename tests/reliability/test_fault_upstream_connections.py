"""The simulator drops connections and hangs on one account: requests succeed on the others, the
account's breaker opens after ``failureThreshold`` consecutive failures, and nothing more is sent
to it while it is open (counted by the simulator itself)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from claude_pool.breaker import State
from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.batch import run_batch
from claude_pool.records.executions import ExecutionStore
from claude_pool.simulator import FaultRule, Scenario
from tests.plugins.stores import StoreBackend
from tests.reliability.conftest import TENANT

THRESHOLD = 3
CALL_TIMEOUT = 0.5  # the pool's client time-out; the simulator hangs far longer


async def test_resets_and_timeouts_on_one_key_fail_over_open_its_breaker_and_send_it_nothing_while_open(
    store_backend: StoreBackend, sim_world: Callable[..., Any]
) -> None:
    scenario = Scenario.uniform(accounts=3, rpm=100_000, itpm=100_000_000, otpm=10_000_000)
    runtime, sim, ids = sim_world(
        scenario,
        config={
            "selection": {"strategy": "round_robin", "maxAttempts": 3},
            "circuitBreaker": {"failureThreshold": THRESHOLD, "timeoutSeconds": 300},
        },
        **store_backend.settings,
    )
    # half the calls to acct-1 have their connection reset, the others hang until the client gives up
    sim.set_faults(
        [
            FaultRule(kind="reset", rate=0.5, targets=("acct-1",)),
            FaultRule(kind="timeout", hang_s=30, targets=("acct-1",)),
        ]
    )
    requests = [DelegationRequest(organization_id=TENANT, message=f"m{i}", max_tokens=16) for i in range(30)]
    async with Pool.open(runtime) as pool:
        pool.call_timeout = CALL_TIMEOUT
        # one at a time: the count sent to acct-1 before its breaker opened is then exact
        outcomes = await run_batch(pool, requests, concurrency=1, executions=ExecutionStore(runtime.db))
        breaker = (await pool.breaker.states([ids["acct-1"]]))[ids["acct-1"]]

    bad = sim.stats().key("acct-1")
    print(
        f"\n[{store_backend.name}] acct-1 received {bad['received']}, resets {bad['fault_reset']}, hangs {bad['fault_timeout']}"
    )
    assert [o.status for o in outcomes] == ["succeeded"] * 30
    assert {o.account_id for o in outcomes} == {ids["acct-2"], ids["acct-3"]}
    assert bad["received"] == THRESHOLD  # and not one request after the breaker opened
    assert bad["fault_reset"] + bad["fault_timeout"] == THRESHOLD
    assert breaker.state is State.OPEN
    with runtime.db.engine.connect() as conn:
        transitions = list(
            conn.execute(
                sa.text("SELECT from_state, to_state FROM breaker_transitions WHERE account_id = :a"),
                {"a": ids["acct-1"]},
            )
        )
    assert [tuple(t) for t in transitions] == [("closed", "open")]
