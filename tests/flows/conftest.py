"""Flows under Prefect's test harness, against the simulators, on SQLite (embedded stores) and on
PostgreSQL with Redis. Tasks read their settings from the environment, as a worker would."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from claude_pool.runtime import Runtime
from claude_pool.simulator import RunningSimulator, RunningSlackSimulator, Scenario
from claude_pool_tasks.context import runtime
from tests.plugins.runtimes import register_simulated_keys

DEFAULT = Scenario.uniform(accounts=2, rpm=10_000, itpm=10_000_000, otpm=1_000_000)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    home = tempfile.mkdtemp(prefix="claude-pool-prefect-")
    os.environ.setdefault("PREFECT_HOME", home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@dataclass
class FlowWorld:
    runtime: Runtime
    sim: RunningSimulator
    slack: RunningSlackSimulator
    account_ids: dict[str, str] = field(default_factory=dict)

    def account(self, name: str) -> Any:
        return self.runtime.accounts.get(self.account_ids[name])


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def flow_backend(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    return {
        "DATABASE_URL": request.getfixturevalue("fresh_postgres_url"),
        "REDIS_URL": request.getfixturevalue("redis_url"),
        "CLAUDE_POOL_REDIS_PREFIX": request.getfixturevalue("redis_prefix"),
    }


@pytest.fixture
def make_flow_world(
    prefect_harness: None,
    flow_backend: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    anthropic_sim_factory: Callable[..., RunningSimulator],
    slack_sim_factory: Callable[..., RunningSlackSimulator],
    encryption_key: str,
) -> Callable[..., FlowWorld]:
    def make(scenario: Scenario | None = None, **slack_options: Any) -> FlowWorld:
        sim = anthropic_sim_factory(scenario or DEFAULT)
        slack = slack_sim_factory(**({"rate_per_channel": 100, "burst": 100} | slack_options))
        env = {
            "CLAUDE_POOL_HOME": str(tmp_path / "home"),
            "CLAUDE_POOL_CONFIG": str(tmp_path / "no-config.json"),
            "ENCRYPTION_KEY": encryption_key,
            "ANTHROPIC_BASE_URL": sim.base_url,
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_BASE_URL": slack.base_url,
            "LOG_FILE": str(tmp_path / "app.log"),
            **flow_backend,
        }
        for name in ("DATABASE_URL", "REDIS_URL", "CLAUDE_POOL_REDIS_PREFIX", "ANTHROPIC_ADMIN_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        rt = runtime()
        world = FlowWorld(rt, sim, slack)
        world.account_ids = register_simulated_keys(rt, sim)
        return world

    return make
