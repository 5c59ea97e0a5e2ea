"""The database commits an execution's first row but its acknowledgement never reaches the worker
(a connection cut at the wrong instant). The worker tries again; it must not make a second row for
the same request, which nothing would ever finish and the reaper would later call "crashed"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.batch import run_batch
from claude_pool.records.executions import ExecutionStore
from claude_pool.simulator import Scenario
from claude_pool.storage import OrchestratorExecution
from tests.reliability.conftest import TENANT, execution_rows

LOST_ACKS = 3


@pytest.fixture
def lost_acknowledgements() -> Iterator[list[str]]:
    """The first LOST_ACKS commits that insert an execution row go through, then raise as a dropped
    connection would; the ids of the rows so committed are collected."""
    lost: list[str] = []

    def note_inserts(session: Session, _flush_context: Any, _instances: Any) -> None:
        for obj in session.new:
            if isinstance(obj, OrchestratorExecution):
                session.info.setdefault("execution_inserts", []).append(obj.id)

    def lose_the_ack(session: Session) -> None:
        inserted = session.info.pop("execution_inserts", [])
        if inserted and len(lost) < LOST_ACKS:
            lost.extend(inserted)
            raise sa.exc.OperationalError("COMMIT", {}, ConnectionResetError("connection reset by peer"))

    event.listen(Session, "before_flush", note_inserts)
    event.listen(Session, "after_commit", lose_the_ack)
    try:
        yield lost
    finally:
        event.remove(Session, "before_flush", note_inserts)
        event.remove(Session, "after_commit", lose_the_ack)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_a_start_whose_acknowledgement_was_lost_makes_one_row(
    database: str,
    request: pytest.FixtureRequest,
    sim_world: Callable[..., Any],
    lost_acknowledgements: list[str],
) -> None:
    options = {"database_url": request.getfixturevalue("fresh_postgres_url")} if database == "postgresql" else {}
    runtime, sim, _ = sim_world(Scenario.uniform(accounts=2, rpm=1_000), **options)
    # No idempotency keys: nothing but the execution id ties a retried start to the first one.
    requests = [DelegationRequest(organization_id=TENANT, message=f"request {i}", max_tokens=16) for i in range(6)]
    async with Pool.open(runtime) as pool:
        outcomes = await run_batch(pool, requests, concurrency=1, executions=ExecutionStore(runtime.db))

    assert len(lost_acknowledgements) == LOST_ACKS  # the fault did happen
    rows = execution_rows(runtime)
    assert len(rows) == len(requests)  # one row per request, not one per try
    assert {r[1] for r in rows} == {"succeeded"}
    assert sorted(o.execution_id for o in outcomes) == sorted(r[0] for r in rows)
    assert set(lost_acknowledgements) <= {r[0] for r in rows}
    assert sim.stats().total["received"] == len(requests)  # and each request was sent once
