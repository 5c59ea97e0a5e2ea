"""``BreakerHistoryListener``: every transition of a circuit becomes a row of ``breaker_transitions``
(the history the UI and the alerts read), with its account, states, reason and times.

A real breaker over the embedded store, on a fake clock, tells the listener; the rows are read
back from a migrated SQLite database."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from claude_pool.accounts.registry import AccountService
from claude_pool.breaker import BreakerEffect, CircuitBreaker, EmbeddedBreakerStore, State, Transition
from claude_pool.breaker.history import BreakerHistoryListener
from claude_pool.core.config import BreakerConfig, load_config
from claude_pool.core.crypto import KeyRing
from claude_pool.storage import Database

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z: the fake clock's start
OPEN_SECONDS = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class HistoryWorld:
    db: Database
    account_id: str
    clock: FakeClock
    breaker: CircuitBreaker

    def rows(self) -> list[dict[str, Any]]:
        with self.db.engine.connect() as conn:
            result = conn.execute(
                sa.text(
                    "SELECT account_id, from_state, to_state, reason, consecutive_failures, open_until,"
                    " created_at FROM breaker_transitions ORDER BY id"
                )
            )
            return [dict(row._mapping) for row in result]


@pytest.fixture
async def world(sqlite_db: Database, tmp_path: Path) -> AsyncIterator[HistoryWorld]:
    accounts = AccountService(sqlite_db, KeyRing(os.urandom(32)), load_config(None, env={}))
    account = accounts.register(
        {"organization_id": "org-a", "name": "history", "tier": "pro", "api_key": "sk-ant-api03-" + "h" * 80}
    )
    clock = FakeClock()
    breaker = CircuitBreaker(
        EmbeddedBreakerStore(tmp_path / "breakers.db", clock=clock),
        BreakerConfig(failure_threshold=3, timeout_seconds=OPEN_SECONDS),
        listeners=[BreakerHistoryListener(sqlite_db)],
    )
    yield HistoryWorld(sqlite_db, account.id, clock, breaker)
    await breaker.aclose()


def _utc(value: datetime | str | None) -> datetime | None:
    """A timestamp column as read back through SQLAlchemy text (SQLite hands back text)."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def test_an_opening_is_stored_with_its_account_states_reason_and_times(world: HistoryWorld) -> None:
    for _ in range(3):
        await world.breaker.record(world.account_id, BreakerEffect.FAILURE)
    (row,) = world.rows()
    assert row["account_id"] == world.account_id
    assert (row["from_state"], row["to_state"]) == ("closed", "open")
    assert row["reason"]  # the store says why it opened
    assert row["consecutive_failures"] == 3
    assert _utc(row["created_at"]) == datetime.fromtimestamp(T0, UTC)
    assert _utc(row["open_until"]) == datetime.fromtimestamp(T0 + OPEN_SECONDS, UTC)


async def test_every_transition_is_a_row_in_order(world: HistoryWorld) -> None:
    for _ in range(3):
        await world.breaker.record(world.account_id, BreakerEffect.FAILURE)
    world.clock.now = T0 + OPEN_SECONDS + 1  # the timeout has passed: the next call is the probe
    permit = await world.breaker.allow(world.account_id)
    assert permit and permit.probe
    await world.breaker.record(world.account_id, BreakerEffect.SUCCESS, permit=permit)

    rows = world.rows()
    assert [(r["from_state"], r["to_state"]) for r in rows] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert {r["account_id"] for r in rows} == {world.account_id}
    # only an opening has an end; the probe and the closing happened on the fake clock's "now"
    assert [_utc(r["open_until"]) is None for r in rows] == [False, True, True]
    assert [_utc(r["created_at"]) for r in rows[1:]] == [
        datetime.fromtimestamp(T0 + OPEN_SECONDS + 1, UTC)
    ] * 2


async def test_an_operators_reason_is_stored_and_a_long_one_is_cut_to_the_column(
    world: HistoryWorld,
) -> None:
    await world.breaker.force_open(world.account_id, "maintenance window announced by Anthropic")
    await world.breaker.reset(world.account_id, reason="x" * 2000)
    opened, reset = world.rows()
    assert opened["reason"] == "maintenance window announced by Anthropic"
    assert (reset["to_state"], reset["reason"]) == ("closed", "x" * 500)


async def test_the_listener_stores_a_transition_it_is_given(world: HistoryWorld) -> None:
    """Called directly (as any breaker would call it), a database failure would raise here rather
    than be logged and skipped as the breaker does with a listener's errors."""
    listener = BreakerHistoryListener(world.db)
    await listener.on_transition(
        Transition(
            account_id=world.account_id,
            from_state=State.HALF_OPEN,
            to_state=State.OPEN,
            reason="probe failed: 500",
            consecutive_failures=6,
            open_until=T0 + 120,
            at=T0,
            trips=2,
        )
    )
    (row,) = world.rows()
    assert (row["from_state"], row["to_state"], row["reason"]) == ("half_open", "open", "probe failed: 500")
    assert row["consecutive_failures"] == 6
    assert _utc(row["open_until"]) == datetime.fromtimestamp(T0 + 120, UTC)
