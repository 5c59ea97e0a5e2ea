"""The one recorded delegation: one row per request from start to outcome, never a second call
for the same request, failures and cancellations said in the row, and the activity note."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest

from claude_pool.core.errors import CallerRequestError, InvalidInput, StorageError
from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.quota.slack import SlackNotifier
from claude_pool.records import ExecutionFailure, ExecutionStore, ExecutionView, RecordedDelegation
from claude_pool.records.recorded import record_delegation
from claude_pool.simulator import Latency, Scenario
from claude_pool.storage import Database

from .conftest import RecordsWorld

TENANT = "tenant-a"


def _request(message: str = "hello", **fields: object) -> DelegationRequest:
    return DelegationRequest.model_validate(
        {"organization_id": TENANT, "message": message, "max_tokens": 16, **fields}
    )


async def test_a_delegation_is_one_row_one_view_and_one_note(
    records_world: Callable[..., RecordsWorld],
) -> None:
    world = records_world()
    async with Pool.open(world.runtime) as pool, SlackNotifier(world.runtime.settings) as notifier:
        recorded = await record_delegation(
            pool, world.executions, _request(user_id="u-1"), notifier=notifier, flow_run_id="run-1"
        )
    execution = recorded.execution
    assert recorded.error is None and execution.succeeded and execution.text
    assert execution.account_id in world.account_ids.values() and execution.account_name
    assert execution.input_tokens > 0 and execution.attempts == 1 and execution.failovers == 0
    [(row_id, status, _)] = world.rows()
    assert (row_id, status) == (execution.execution_id, "succeeded")
    stored = ExecutionView.of(world.executions.get(row_id), account_name=execution.account_name)
    assert stored == execution  # what the caller is told is what the row says
    assert json.loads(json.dumps(execution.as_dict()))["flow_run_id"] == "run-1"
    [note] = world.slack.messages_in("#it-test")
    assert "delegation succeeded" in (note.text or "") and execution.account_name in (note.text or "")


async def test_the_same_idempotency_key_is_sent_once(records_world: Callable[..., RecordsWorld]) -> None:
    world = records_world()
    async with Pool.open(world.runtime) as pool:
        first = await record_delegation(pool, world.executions, _request(idempotency_key="job-1"))
        again = await record_delegation(pool, world.executions, _request(idempotency_key="job-1"))
    assert again.execution.execution_id == first.execution.execution_id and again.execution.succeeded
    assert again.execution.output_tokens == first.execution.output_tokens
    assert world.sim.stats().total["received"] == 1 and len(world.rows()) == 1


async def test_a_failure_is_recorded_and_handed_back(records_world: Callable[..., RecordsWorld]) -> None:
    world = records_world()
    async with Pool.open(world.runtime) as pool, SlackNotifier(world.runtime.settings) as notifier:
        recorded = await record_delegation(pool, world.executions, _request(model="gpt-4"), notifier=notifier)
    assert isinstance(recorded.error, CallerRequestError)
    assert (recorded.execution.status, recorded.execution.error_type) == ("failed", "CallerRequestError")
    assert world.rows() == [(recorded.execution.execution_id, "failed", "CallerRequestError")]
    [note] = world.slack.messages_in("#it-test")
    assert "delegation failed" in (note.text or "")


async def test_an_error_the_caller_retries_leaves_the_row_to_the_next_try(
    records_world: Callable[..., RecordsWorld],
) -> None:
    world = records_world()
    request = _request(model="gpt-4")
    async with Pool.open(world.runtime) as pool:
        first_try = RecordedDelegation(world.executions, request, retried_by_caller=(CallerRequestError,))
        with pytest.raises(CallerRequestError):
            await first_try.run(pool)
        assert world.rows() == [(first_try.execution_id, "running", None)]
        # the next try (a retried Prefect task) has the same execution id, and finds that row
        last_try = RecordedDelegation(world.executions, request, execution_id=first_try.execution_id)
        recorded = await last_try.run(pool)
    assert recorded.execution.execution_id == first_try.execution_id
    assert world.rows() == [(first_try.execution_id, "failed", "CallerRequestError")]


async def test_a_cancelled_call_is_recorded_as_cancelled(records_world: Callable[..., RecordsWorld]) -> None:
    world = records_world(
        Scenario.uniform(accounts=1, rpm=10_000, itpm=10_000_000, otpm=1_000_000, latency=Latency(ttft_ms=30_000))
    )
    async with Pool.open(world.runtime) as pool:
        recorded = RecordedDelegation(world.executions, _request())
        call = asyncio.create_task(recorded.run(pool))
        deadline = time.monotonic() + 10
        while world.sim.stats().total["received"] < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert world.sim.stats().total["received"] == 1  # the call is in flight upstream
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert world.rows() == [(recorded.execution_id, "cancelled", "Cancelled")]


class Answered:
    """What the caller on the line heard, and which rows existed when it heard it."""

    def __init__(self, world: RecordsWorld) -> None:
        self.world = world
        self.outcomes: list[object] = []
        self.rows_then: list[list[tuple[str, str, str | None]]] = []

    async def __call__(self, outcome: object) -> None:
        self.outcomes.append(outcome)
        self.rows_then.append(self.world.rows())


async def test_a_call_on_the_line_is_answered_first_and_written_once(
    records_world: Callable[..., RecordsWorld],
) -> None:
    world = records_world()
    answered = Answered(world)
    async with Pool.open(world.runtime) as pool:
        on_the_line = RecordedDelegation(world.executions, _request())
        recorded = await on_the_line.run_on_the_line(pool, answered)
    assert recorded.execution.succeeded and len(answered.outcomes) == 1
    assert answered.rows_then == [[]]  # the caller had its answer before anything was written
    assert world.rows() == [(on_the_line.execution_id, "succeeded", None)]


async def test_a_long_call_on_the_line_is_written_running_while_it_runs(
    records_world: Callable[..., RecordsWorld],
) -> None:
    world = records_world(
        Scenario.uniform(accounts=1, rpm=10_000, itpm=10_000_000, otpm=1_000_000, latency=Latency(ttft_ms=600))
    )
    answered = Answered(world)
    async with Pool.open(world.runtime) as pool:
        on_the_line = RecordedDelegation(world.executions, _request())
        call = asyncio.create_task(on_the_line.run_on_the_line(pool, answered, start_after=0.1))
        deadline = time.monotonic() + 10
        while not world.rows() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert world.rows() == [(on_the_line.execution_id, "running", None)]  # a crash now leaves a trace
        recorded = await call
    assert recorded.execution.succeeded
    assert world.rows() == [(on_the_line.execution_id, "succeeded", None)]


async def test_a_call_on_the_line_cancelled_mid_call_is_recorded_as_cancelled(
    records_world: Callable[..., RecordsWorld],
) -> None:
    world = records_world(
        Scenario.uniform(accounts=1, rpm=10_000, itpm=10_000_000, otpm=1_000_000, latency=Latency(ttft_ms=30_000))
    )
    async with Pool.open(world.runtime) as pool:
        on_the_line = RecordedDelegation(world.executions, _request())
        call = asyncio.create_task(on_the_line.run_on_the_line(pool, Answered(world), start_after=0.05))
        deadline = time.monotonic() + 10
        while (world.sim.stats().total["received"] < 1 or not world.rows()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert world.rows() == [(on_the_line.execution_id, "cancelled", "Cancelled")]


async def test_a_request_whose_row_cannot_be_written_is_never_sent(
    records_world: Callable[..., RecordsWorld],
) -> None:
    world = records_world()
    unreachable = ExecutionStore(Database("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"))
    async with Pool.open(world.runtime) as pool:
        recorded = await RecordedDelegation(unreachable, _request(), retry_delays=()).run(pool)
    assert isinstance(recorded.error, StorageError)
    assert recorded.execution.execution_id is None and recorded.execution.status == "failed"
    assert recorded.execution.error_type == "StorageError"
    assert world.sim.stats().total["received"] == 0


def test_a_failure_is_recorded_from_its_type_name_and_message(
    records_world: Callable[..., RecordsWorld],
) -> None:
    world = records_world()
    store = world.executions
    row, created = store.start(_request())
    assert created
    failed = store.fail(row.id, ExecutionFailure("WorkerLost", "the worker went away"))
    assert (failed.status, failed.error_type, failed.error_message) == ("failed", "WorkerLost", "the worker went away")
    # an execution id is an organization's own: another one's request cannot take it over
    with pytest.raises(InvalidInput, match="execution_id"):
        store.start(DelegationRequest(organization_id="tenant-b", message="x"), execution_id=row.id)
