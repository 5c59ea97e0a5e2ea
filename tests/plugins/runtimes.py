"""A ``Runtime`` (SQLite database, embedded stores) whose accounts are the Anthropic simulator's keys.

    def test_x(simulated_runtime_factory):
        world = simulated_runtime_factory(organizations={"tenant-a": ["acct-1", "acct-2"]})
        async with Pool.open(world.runtime) as pool: ...

For tests that need real accounts behind a real upstream (the event publisher, the health probe);
the pool's own tests have ``make_world`` over it, on both backends.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from claude_pool.core.config import PoolConfig, load_config
from claude_pool.core.settings import Secret, Settings
from claude_pool.runtime import Runtime
from claude_pool.simulator import KeySpec, OrgSpec, RunningSimulator, Scenario, register_simulated_accounts
from tests.plugins.closing import closed_after

__all__ = [
    "TENANT",
    "SimulatedKeys",
    "SimulatedRuntime",
    "register_simulated_keys",
    "simulated_runtime_factory",
    "simulated_settings",
]

TENANT = "tenant-a"


def simulated_settings(
    home: Path,
    anthropic_base_url: str,
    encryption_key: str,
    *,
    database_url: str | None = None,
    **options: Any,
) -> Settings:
    """Settings of a runtime at ``home`` whose upstream is ``anthropic_base_url`` (a simulator): its
    own SQLite file unless ``database_url``, no log file unless ``log_file``; ``options`` are any
    other fields (``redis_url``, ``slack_bot_token``...)."""
    options.setdefault("log_file", None)
    return Settings(
        home=home,
        database_url=database_url or f"sqlite:///{home / 'claude-pool.db'}",
        encryption_key=Secret(encryption_key),
        anthropic_base_url=anthropic_base_url,
        **options,
    )


class SimulatedKeys(Protocol):
    """A simulator's keys and organizations: ``RunningSimulator``, or one in a process of its own."""

    @property
    def keys(self) -> Sequence[KeySpec]: ...

    @property
    def orgs(self) -> Sequence[OrgSpec]: ...


def register_simulated_keys(
    runtime: Runtime,
    sim: SimulatedKeys,
    *,
    organization_id: str = TENANT,
    keys: Sequence[KeySpec] | None = None,
    shared_orgs: bool = True,
    **extra: Any,
) -> dict[str, str]:
    """The database migrated, then each of ``keys`` (default: every key of the simulator) as an
    account of ``organization_id`` with its organization's limits (keys of one organization share a
    capacity group when ``shared_orgs``) and the ``extra`` fields. Returns name -> account id."""
    runtime.db.upgrade()
    return register_simulated_accounts(
        runtime.accounts,
        sim.keys if keys is None else keys,
        sim.orgs,
        organization_id=organization_id,
        shared_orgs=shared_orgs,
        **extra,
    )


@dataclass
class SimulatedRuntime:
    runtime: Runtime
    sim: RunningSimulator
    account_ids: dict[str, str]  # simulator key name -> account id

    @property
    def api_keys(self) -> list[str]:
        """Every plaintext key the simulator accepts: none may appear where a key must not."""
        return [spec.key for spec in self.sim.keys]

    def close(self) -> None:
        self.runtime.close()


# Tests of everything but the cold start begin on buckets as full as their limits say, whatever the
# product's default; cold buckets that start empty have their own tests (tests/pool/test_overload.py).
TRUSTING_LIMITS = load_config(None, env={}).model_copy(
    update={"capacity": load_config(None, env={}).capacity.model_copy(update={"cold_start": "full"})}
)


@pytest.fixture
def simulated_runtime_factory(
    tmp_path: Path,
    anthropic_sim_factory: Callable[..., RunningSimulator],
    encryption_key: str,
) -> Iterator[Callable[..., SimulatedRuntime]]:
    homes = itertools.count()

    def build(
        scenario: Scenario | None = None,
        *,
        organizations: Mapping[str, Sequence[str]] | None = None,
        config: PoolConfig | None = None,
        shared_orgs: bool = False,
        **settings: Any,
    ) -> SimulatedRuntime:
        """``organizations``: our organization -> the simulator key names registered in it
        (default: every key in ``tenant-a``); ``shared_orgs``: keys of one simulated organization
        share a capacity group; ``settings``: other fields of the runtime's ``Settings``."""
        sim = anthropic_sim_factory(scenario)
        home = tmp_path / f"runtime{next(homes)}"
        runtime = Runtime(
            settings=simulated_settings(home, sim.base_url, encryption_key, **settings),
            config=config or TRUSTING_LIMITS,
        )
        ids: dict[str, str] = {}
        for organization, names in (organizations or {TENANT: [k.name for k in sim.keys]}).items():
            chosen = [k for k in sim.keys if k.name in names]
            ids |= register_simulated_keys(
                runtime, sim, organization_id=organization, keys=chosen, shared_orgs=shared_orgs
            )
        return SimulatedRuntime(runtime, sim, ids)

    yield from closed_after(build)
