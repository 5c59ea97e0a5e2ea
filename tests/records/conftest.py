"""A runtime (SQLite, embedded stores) whose accounts are the Anthropic simulator's keys, with the
Slack simulator behind its notifier: what a recorded delegation writes to and talks to."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from claude_pool.core.settings import Secret
from claude_pool.records.executions import ExecutionStore
from claude_pool.runtime import Runtime
from claude_pool.simulator import RunningSimulator, RunningSlackSimulator, Scenario
from tests.plugins.closing import closed_after
from tests.plugins.runtimes import TRUSTING_LIMITS, register_simulated_keys, simulated_settings


@dataclass
class RecordsWorld:
    runtime: Runtime
    sim: RunningSimulator
    slack: RunningSlackSimulator
    account_ids: dict[str, str]

    @property
    def executions(self) -> ExecutionStore:
        return ExecutionStore(self.runtime.db)

    def close(self) -> None:
        self.runtime.close()

    def rows(self) -> list[tuple[str, str, str | None]]:
        """(id, status, error_type) of every execution, oldest first."""
        with self.runtime.db.engine.connect() as conn:
            query = "SELECT id, status, error_type FROM orchestrator_executions ORDER BY created_at"
            return [(r[0], r[1], r[2]) for r in conn.execute(sa.text(query))]


@pytest.fixture
def records_world(
    tmp_path: Path,
    anthropic_sim_factory: Callable[..., RunningSimulator],
    slack_sim_factory: Callable[..., RunningSlackSimulator],
    encryption_key: str,
) -> Iterator[Callable[..., RecordsWorld]]:
    homes = itertools.count()

    def build(scenario: Scenario | None = None) -> RecordsWorld:
        sim = anthropic_sim_factory(
            scenario or Scenario.uniform(accounts=2, rpm=10_000, itpm=10_000_000, otpm=1_000_000)
        )
        slack = slack_sim_factory(rate_per_channel=100, burst=100)
        settings = simulated_settings(
            tmp_path / f"world{next(homes)}",
            sim.base_url,
            encryption_key,
            slack_bot_token=Secret(slack.token),
            slack_base_url=slack.base_url,
        )
        runtime = Runtime(settings=settings, config=TRUSTING_LIMITS)
        return RecordsWorld(runtime, sim, slack, register_simulated_keys(runtime, sim))

    yield from closed_after(build)
