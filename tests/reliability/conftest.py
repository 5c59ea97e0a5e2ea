"""Worlds for the reliability tests: a runtime over simulated accounts whose database or Redis can
be taken away and given back (through a proxy or a throwaway server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from claude_pool.core.config import PoolConfig, load_config
from claude_pool.core.settings import Secret, Settings
from claude_pool.runtime import Runtime
from claude_pool.simulator import RunningSimulator, Scenario, register_simulated_accounts
from tests.reliability.netfaults import TcpProxy

TENANT = "tenant-a"


def make_runtime(
    home: Path,
    sim: RunningSimulator,
    encryption_key: str,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    redis_prefix: str = "claude-pool",
    config: dict[str, Any] | None = None,
) -> Runtime:
    settings = Settings(
        home=home,
        database_url=database_url or f"sqlite:///{home / 'claude-pool.db'}",
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        encryption_key=Secret(encryption_key),
        anthropic_base_url=sim.base_url,
        log_file=home / "app.log",
    )
    pool_config = PoolConfig.model_validate(config) if config else load_config(None, env={})
    return Runtime(settings=settings, config=pool_config)


def register_keys(runtime: Runtime, sim: RunningSimulator, **extra: Any) -> dict[str, str]:
    """Every simulated key as an account of ``TENANT`` with its organization's limits (and
    ``extra`` fields such as ``max_in_flight``); name -> account id."""
    runtime.db.upgrade()
    return register_simulated_accounts(
        runtime.accounts, sim.keys, sim.orgs, organization_id=TENANT, shared_orgs=False, **extra
    )


async def wait_until(condition: Callable[[], bool], *, what: str, timeout: float = 30.0) -> None:
    """Return as soon as ``condition()`` holds, polling every 10 ms; fail after ``timeout`` seconds.
    For a moment another component reaches (calls in flight upstream), instead of a guessed sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


def execution_rows(runtime: Runtime) -> list[tuple[Any, ...]]:
    with runtime.db.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text("SELECT id, status, error_type, request_json FROM orchestrator_executions")
            )
        ]


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[str, int], TcpProxy]]:
    proxies: list[TcpProxy] = []

    def make(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def sim_world(
    tmp_path: Path, anthropic_sim_factory: Callable[..., RunningSimulator], encryption_key: str
) -> Iterator[Callable[..., tuple[Runtime, RunningSimulator, dict[str, str]]]]:
    """``make(scenario, **runtime options)``: a simulator, a runtime on a migrated database and
    every simulated key registered; runtimes are closed after the test."""
    runtimes: list[Runtime] = []

    def make(
        scenario: Scenario, *, extra: dict[str, Any] | None = None, **options: Any
    ) -> tuple[Runtime, RunningSimulator, dict[str, str]]:
        extra = extra or {}
        sim = anthropic_sim_factory(scenario)
        runtime = make_runtime(tmp_path / f"home{len(runtimes)}", sim, encryption_key, **options)
        runtimes.append(runtime)
        return runtime, sim, register_keys(runtime, sim, **extra)

    yield make
    for runtime in runtimes:
        runtime.close()
