"""Worlds for the reliability tests: a runtime over simulated accounts whose database or Redis can
be taken away and given back (through a proxy or a throwaway server)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from claude_pool.core.config import PoolConfig
from claude_pool.runtime import Runtime
from claude_pool.simulator import RunningSimulator, Scenario
from tests.plugins.closing import closed_after
from tests.plugins.runtimes import TENANT, register_simulated_keys, simulated_settings
from tests.reliability.netfaults import TcpProxy


def make_runtime(
    home: Path,
    sim: RunningSimulator,
    encryption_key: str,
    *,
    config: dict[str, Any] | None = None,
    **options: Any,
) -> Runtime:
    """A runtime at ``home`` over ``sim``, logging to ``home/app.log``; ``options`` are settings
    (``database_url``, ``redis_url``, ``redis_prefix``), ``config`` the operator's JSON config."""
    settings = simulated_settings(home, sim.base_url, encryption_key, log_file=home / "app.log", **options)
    # Buckets start as full as their limits say unless the test's config says otherwise (see
    # tests.plugins.runtimes.TRUSTING_LIMITS).
    config = config or {}
    pool_config = PoolConfig.model_validate(
        {**config, "capacity": {"coldStart": "full", **config.get("capacity", {})}}
    )
    return Runtime(settings=settings, config=pool_config)


def register_keys(runtime: Runtime, sim: RunningSimulator, **extra: Any) -> dict[str, str]:
    """Every simulated key as an account of ``TENANT`` with its organization's limits (and
    ``extra`` fields such as ``max_in_flight``); name -> account id."""
    return register_simulated_keys(runtime, sim, organization_id=TENANT, shared_orgs=False, **extra)


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


# How long before pytest-timeout ends a hung test its tasks are shown.
TASKS_SHOWN_BEFORE_TIMEOUT_S = 15.0


@pytest.fixture
async def tasks_shown_if_hung(request: pytest.FixtureRequest) -> Any:
    """A test that hangs prints every task of its event loop, each with where it waits, shortly
    before pytest-timeout ends it: that dump shows the threads only, and a hung asyncio test's
    threads are all idle (as in the one CI hang of the Redis-loss test: README, Reliability)."""
    marker = request.node.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else float(request.config.getini("timeout") or 0)
    if limit <= TASKS_SHOWN_BEFORE_TIMEOUT_S:
        yield
        return

    def show_tasks() -> None:
        print(f"\n--- {request.node.nodeid}: still running; every task of its event loop ---", file=sys.stderr)
        for task in asyncio.all_tasks():
            print(f"{task.get_name()}:", *_awaiting(task.get_coro()), file=sys.stderr, sep="\n    ")

    handle = asyncio.get_running_loop().call_later(limit - TASKS_SHOWN_BEFORE_TIMEOUT_S, show_tasks)
    try:
        yield
    finally:
        handle.cancel()


def _awaiting(coro: Any) -> list[str]:
    """Where a suspended coroutine waits, outermost first: ``Task.get_stack`` gives only the outermost
    frame of a suspended coroutine, so the chain of awaits is followed by hand."""
    lines = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        nxt = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
        if nxt is None and frame is None:
            lines.append(repr(coro)[:300])  # a future, at the end of the chain
        coro = nxt
    return lines


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[str, int], TcpProxy]]:
    yield from closed_after(lambda host, port: TcpProxy(host, port).start())


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
