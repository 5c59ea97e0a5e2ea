"""``EventPublisher``: what a pool and its breakers report becomes events on the bus, each for the
organization it concerns, and no payload carries an API key.

A real pool delegates to the Anthropic simulator with the publisher as its listener (pool and
breaker). Accounts acct-1 and acct-2 belong to tenant-a, acct-3 to tenant-b. What each audience
sees is read as a dashboard reconnecting with ``Last-Event-ID: 0`` would: the bus replays what it
kept for that audience, up to a closing marker published after everything under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

import pytest

from claude_pool.core.config import PoolConfig
from claude_pool.core.errors import CallerRequestError, ClaudePoolError
from claude_pool.events import Event, EventPublisher, InProcessEventBus, execution_scope
from claude_pool.pool import Pool
from claude_pool.pool.directory import AccountDirectory
from claude_pool.pool.models import DelegationRequest
from claude_pool.simulator import FaultRule
from tests.plugins.runtimes import SimulatedRuntime

A, B = "tenant-a", "tenant-b"
ORGANIZATIONS = {A: ["acct-1", "acct-2"], B: ["acct-3"]}
END = "test.end"
THRESHOLD = 2


@dataclass
class Published:
    """The bus and what each audience (tenant-a, tenant-b, an admin) was shown."""

    world: SimulatedRuntime
    bus: InProcessEventBus

    async def seen_by(self, organizations: Collection[str] | None) -> list[Event]:
        end_of = next(iter(organizations)) if organizations else None
        events: list[Event] = []

        async def replay() -> None:
            async for event in self.bus.subscribe(organizations, last_event_id="0"):
                if event.type == END:
                    if event.organization_id == end_of:
                        return
                    continue
                events.append(event)

        await asyncio.wait_for(replay(), 5)
        return events

    async def close(self) -> None:
        # The markers come after everything under test: each audience reads up to its own.
        for organization in (A, B, None):
            await self.bus.publish(Event(END, organization, {}))

    def assert_no_key_in(self, events: list[Event]) -> None:
        for event in events:
            raw = json.dumps(event.data, default=str)
            for key in self.world.api_keys:
                assert key not in raw and key not in event.to_json(), f"a key in {event.type}"


@pytest.fixture
def make_pool(
    simulated_runtime_factory: Callable[..., SimulatedRuntime],
) -> Callable[..., tuple[Pool, Published]]:
    def make(*, directory: bool = True) -> tuple[Pool, Published]:
        config = PoolConfig.model_validate({"circuitBreaker": {"failureThreshold": THRESHOLD}})
        world = simulated_runtime_factory(organizations=ORGANIZATIONS, config=config)
        bus = InProcessEventBus()
        # The directory tells a breaker transition (which names only an account) its organization.
        accounts = AccountDirectory(world.runtime.db, world.runtime.config) if directory else None
        publisher = EventPublisher(bus, accounts)
        pool = Pool.open(world.runtime, listeners=[publisher], breaker_listeners=[publisher])
        return pool, Published(world, bus)

    return make


def _of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.type == kind]


async def test_a_delegation_is_selected_then_succeeded_for_its_organization_only(
    make_pool: Callable[..., tuple[Pool, Published]],
) -> None:
    pool, published = make_pool()
    async with pool:
        result = await pool.delegate(
            DelegationRequest(organization_id=A, message="hello", user_id="u-7", idempotency_key="idem-1")
        )
    await published.close()
    seen_a, seen_b, seen_admin = [await published.seen_by(o) for o in ([A], [B], None)]

    assert [e.type for e in seen_a] == ["account.selected", "execution.succeeded"]
    selected, succeeded = seen_a
    assert {e.organization_id for e in seen_a} == {A}
    assert selected.data["account_id"] == result.account_id
    assert selected.data["account_name"] == result.account_name
    assert (selected.data["attempt"], selected.data["probe"], selected.data["user_id"]) == (1, False, "u-7")
    assert succeeded.data["account_id"] == result.account_id
    assert succeeded.data["attempts"] == 1
    assert succeeded.data["input_tokens"] == result.usage.input_tokens > 0
    assert succeeded.data["output_tokens"] == result.usage.output_tokens > 0
    assert (succeeded.data["user_id"], succeeded.data["idempotency_key"]) == ("u-7", "idem-1")
    assert seen_b == []  # tenant-b is shown nothing of tenant-a's delegation
    assert [e.id for e in seen_admin] == [e.id for e in seen_a]  # an admin sees every organization
    published.assert_no_key_in(seen_admin)


async def test_events_about_an_execution_name_the_execution_they_belong_to(
    make_pool: Callable[..., tuple[Pool, Published]],
) -> None:
    pool, published = make_pool()
    async with pool:

        async def recorded(execution_id: str, request: DelegationRequest) -> None:
            # As a front end that records its delegations runs them (http/execute.py).
            with execution_scope(execution_id), contextlib.suppress(ClaudePoolError):
                await pool.delegate(request)

        # Two at once: each task has its own scope, neither sees the other's id.
        await asyncio.gather(
            recorded("exec-ok", DelegationRequest(organization_id=A, message="hello")),
            recorded("exec-bad", DelegationRequest(organization_id=A, message="hello", model="gpt-4")),
        )
        await pool.delegate(DelegationRequest(organization_id=A, message="unrecorded"))
    await published.close()
    seen = await published.seen_by([A])

    def ids(kind: str) -> Counter[str | None]:
        return Counter(e.data["execution_id"] for e in _of(seen, kind))

    # The unrecorded delegation's events name none.
    assert ids("account.selected") == Counter({"exec-ok": 1, "exec-bad": 1, None: 1})
    assert ids("execution.succeeded") == Counter({"exec-ok": 1, None: 1})
    assert ids("execution.failed") == Counter({"exec-bad": 1})


async def test_a_revoked_key_is_an_account_status_for_its_organization(
    make_pool: Callable[..., tuple[Pool, Published]],
) -> None:
    pool, published = make_pool()
    published.world.sim.revoke("acct-3")  # tenant-b's only account
    async with pool:
        with pytest.raises(ClaudePoolError):
            await pool.delegate(DelegationRequest(organization_id=B, message="hello"))
    await published.close()
    seen_a, seen_b, seen_admin = [await published.seen_by(o) for o in ([A], [B], None)]

    assert seen_a == []
    assert {e.organization_id for e in seen_b} == {B}
    (status,) = _of(seen_b, "account.status")
    assert status.data["account_id"] == published.world.account_ids["acct-3"]
    assert status.data["account_name"] == "acct-3"
    assert status.data["status"] == "invalid_credentials" and status.data["reason"]
    assert status.data["until"] is None  # set aside until an operator (or a probe) restores it
    published.assert_no_key_in(seen_admin)


async def test_a_delegation_that_fails_for_good_is_a_failure_for_its_organization(
    make_pool: Callable[..., tuple[Pool, Published]],
) -> None:
    pool, published = make_pool()
    async with pool:
        with pytest.raises(CallerRequestError) as failure:  # no such model: not retried
            await pool.delegate(
                DelegationRequest(organization_id=B, message="hello", model="gpt-4", user_id="u-9")
            )
    await published.close()
    seen_a, seen_b, seen_admin = [await published.seen_by(o) for o in ([A], [B], None)]

    assert seen_a == []
    assert [e.type for e in seen_b] == ["account.selected", "execution.failed"]
    failed = seen_b[-1]
    assert failed.organization_id == B
    assert failed.data["error_type"] == "CallerRequestError"
    assert failed.data["error"] == str(failure.value)[:1000]
    assert failed.data["user_id"] == "u-9"
    published.assert_no_key_in(seen_admin)


async def _open_tenant_b_circuit(
    make_pool: Callable[..., tuple[Pool, Published]], *, directory: bool = True
) -> Published:
    """acct-3 (tenant-b's only account) answers 500 until its circuit opens; what was published."""
    pool, published = make_pool(directory=directory)
    published.world.sim.set_faults([FaultRule(kind="error", status=500, targets=("acct-3",))])
    async with pool:
        for _ in range(THRESHOLD):
            with pytest.raises(ClaudePoolError):
                await pool.delegate(DelegationRequest(organization_id=B, message="hello"))
    await published.close()
    return published


async def test_a_breaker_transition_goes_to_the_organization_of_its_account(
    make_pool: Callable[..., tuple[Pool, Published]],
) -> None:
    published = await _open_tenant_b_circuit(make_pool)
    seen_a, seen_b, seen_admin = [await published.seen_by(o) for o in ([A], [B], None)]

    (transition,) = _of(seen_b, "breaker.transition")
    assert transition.organization_id == B
    assert transition.data["account_id"] == published.world.account_ids["acct-3"]
    assert (transition.data["from"], transition.data["to"]) == ("closed", "open")
    assert transition.data["consecutive_failures"] == THRESHOLD
    assert transition.data["open_until"] is not None and transition.data["reason"]
    assert _of(seen_a, "breaker.transition") == []
    published.assert_no_key_in(seen_admin)


async def test_without_a_directory_a_breaker_transition_is_shown_to_admins_only(
    make_pool: Callable[..., tuple[Pool, Published]],
) -> None:
    published = await _open_tenant_b_circuit(make_pool, directory=False)
    seen_b, seen_admin = [await published.seen_by(o) for o in ([B], None)]

    assert _of(seen_b, "breaker.transition") == []
    (transition,) = _of(seen_admin, "breaker.transition")
    assert transition.organization_id is None
