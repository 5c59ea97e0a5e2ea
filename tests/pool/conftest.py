"""A pool over simulated accounts, on each backend (``store_backend``): embedded (SQLite file stores)
and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from claude_pool.core.config import PoolConfig
from claude_pool.pool import Pool
from claude_pool.simulator import Scenario
from tests.plugins.runtimes import SimulatedRuntime
from tests.plugins.stores import StoreBackend


class PoolWorld(SimulatedRuntime):
    def open_pool(self, **kwargs: Any) -> Pool:
        return Pool.open(self.runtime, **kwargs)


@pytest.fixture
def make_world(
    store_backend: StoreBackend, simulated_runtime_factory: Callable[..., SimulatedRuntime]
) -> Callable[..., PoolWorld]:
    """``make(scenario, config=..., **settings)``: a runtime on ``store_backend`` whose accounts of
    tenant-a are the simulator's keys, those of one simulated organization in one capacity group."""

    def make(
        scenario: Scenario | None = None, *, config: PoolConfig | None = None, **settings: Any
    ) -> PoolWorld:
        options = {**store_backend.settings, **settings}
        built = simulated_runtime_factory(scenario, config=config, shared_orgs=True, **options)
        return PoolWorld(built.runtime, built.sim, built.account_ids)

    return make


@pytest.fixture
async def world_pool(make_world: Callable[..., PoolWorld]) -> AsyncIterator[tuple[PoolWorld, Pool]]:
    world = make_world()
    async with world.open_pool() as pool:
        yield world, pool
