"""Several processes hammer one account's breaker through their own stores."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from . import _mp_worker

PROCESSES = 4
ROUNDS = 30


def _run_workers(backend: str, where: str, prefix: str) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_mp_worker.run, args=(backend, where, prefix, ROUNDS, barrier, results))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    try:
        out = [results.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        results.join_thread()
    assert all(p.exitcode == 0 for p in procs)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["embedded", "redis"])
def test_many_processes_open_the_circuit_once(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if backend == "redis":
        where, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    else:
        where, prefix = str(tmp_path / "breakers.db"), ""
    out = _run_workers(backend, where, prefix)

    moves = [m for o in out for m in o["moves"]]
    assert moves == [("closed", "open")]
    # Each process holds at most one permit at a time: beyond the threshold, only those in flight
    # when the circuit opened got through.
    permits = sum(o["permits"] for o in out)
    assert _mp_worker.THRESHOLD <= permits <= _mp_worker.THRESHOLD + PROCESSES - 1
    assert sum(o["probes"] for o in out) == 0
    assert sum(o["after_denial"] for o in out) == 0
    assert sum(o["late_permits"] for o in out) == 0
