"""A pool over simulated accounts, on each backend: embedded (SQLite file stores) and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from claude_pool.core.config import PoolConfig, load_config
from claude_pool.core.settings import Secret, Settings
from claude_pool.pool import Pool
from claude_pool.runtime import Runtime
from claude_pool.simulator import RunningSimulator, Scenario, register_simulated_accounts


@dataclass
class PoolWorld:
    runtime: Runtime
    sim: RunningSimulator
    account_ids: dict[str, str] = field(default_factory=dict)  # simulator key name -> account id

    def open_pool(self, **kwargs: Any) -> Pool:
        return Pool.open(self.runtime, **kwargs)


def register_simulated_keys(
    runtime: Runtime, sim: RunningSimulator, *, shared_orgs: bool = True
) -> dict[str, str]:
    """Every key of the simulator as an account of tenant-a whose limits are its organization's."""
    runtime.db.upgrade()
    return register_simulated_accounts(
        runtime.accounts, sim.keys, sim.orgs, organization_id="tenant-a", shared_orgs=shared_orgs
    )


@pytest.fixture(params=["embedded", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, str | None]:
    if request.param == "embedded":
        return {"redis_url": None, "redis_prefix": "claude-pool"}
    return {
        "redis_url": request.getfixturevalue("redis_url"),
        "redis_prefix": request.getfixturevalue("redis_prefix"),
    }


@pytest.fixture
def make_world(
    tmp_path: Path,
    backend: dict[str, Any],
    anthropic_sim_factory: Callable[..., RunningSimulator],
    encryption_key: str,
) -> Iterator[Callable[..., PoolWorld]]:
    worlds: list[PoolWorld] = []

    def make(
        scenario: Scenario | None = None, *, config: PoolConfig | None = None, **settings: Any
    ) -> PoolWorld:
        sim = anthropic_sim_factory(scenario)
        home = tmp_path / f"world{len(worlds)}"
        s = Settings(
            home=home,
            database_url=f"sqlite:///{home / 'claude-pool.db'}",
            encryption_key=Secret(encryption_key),
            anthropic_base_url=sim.base_url,
            log_file=home / "app.log",
            **{**backend, **settings},
        )
        runtime = Runtime(settings=s, config=config or load_config(None, env={}))
        world = PoolWorld(runtime, sim)
        world.account_ids = register_simulated_keys(runtime, sim)
        worlds.append(world)
        return world

    yield make
    for w in worlds:
        w.runtime.close()


@pytest.fixture
async def world_pool(make_world: Callable[..., PoolWorld]) -> AsyncIterator[tuple[PoolWorld, Pool]]:
    world = make_world()
    async with world.open_pool() as pool:
        yield world, pool
