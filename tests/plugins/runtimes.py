"""A ``Runtime`` (SQLite database, embedded stores) whose accounts are the Anthropic simulator's keys.

    def test_x(simulated_runtime_factory):
        world = simulated_runtime_factory(organizations={"tenant-a": ["acct-1", "acct-2"]})
        async with Pool.open(world.runtime) as pool: ...

For tests outside ``tests/pool`` that need real accounts behind a real upstream (the event
publisher, the health probe); the pool's own tests have ``make_world`` with both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from claude_pool.core.config import PoolConfig, load_config
from claude_pool.core.settings import Secret, Settings
from claude_pool.runtime import Runtime
from claude_pool.simulator import RunningSimulator, Scenario, register_simulated_accounts

__all__ = ["SimulatedRuntime", "simulated_runtime_factory"]


@dataclass
class SimulatedRuntime:
    runtime: Runtime
    sim: RunningSimulator
    account_ids: dict[str, str]  # simulator key name -> account id

    @property
    def api_keys(self) -> list[str]:
        """Every plaintext key the simulator accepts: none may appear where a key must not."""
        return [spec.key for spec in self.sim.keys]


@pytest.fixture
def simulated_runtime_factory(
    tmp_path: Path,
    anthropic_sim_factory: Callable[..., RunningSimulator],
    encryption_key: str,
) -> Iterator[Callable[..., SimulatedRuntime]]:
    built: list[SimulatedRuntime] = []

    def build(
        scenario: Scenario | None = None,
        *,
        organizations: Mapping[str, Sequence[str]] | None = None,
        config: PoolConfig | None = None,
    ) -> SimulatedRuntime:
        """``organizations``: our organization -> the simulator key names registered in it
        (default: every key in ``tenant-a``)."""
        sim = anthropic_sim_factory(scenario)
        home = tmp_path / f"runtime{len(built)}"
        settings = Settings(
            home=home,
            database_url=f"sqlite:///{home / 'claude-pool.db'}",
            encryption_key=Secret(encryption_key),
            anthropic_base_url=sim.base_url,
            log_file=None,
        )
        runtime = Runtime(settings=settings, config=config or load_config(None, env={}))
        runtime.db.upgrade()
        keys = sim.keys
        ids: dict[str, str] = {}
        for organization, names in (organizations or {"tenant-a": [k.name for k in keys]}).items():
            chosen = [k for k in keys if k.name in names]
            ids |= register_simulated_accounts(
                runtime.accounts, chosen, sim.orgs, organization_id=organization, shared_orgs=False
            )
        world = SimulatedRuntime(runtime, sim, ids)
        built.append(world)
        return world

    yield build
    for world in built:
        world.runtime.close()
