"""Several processes hammer one account's breaker through their own stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_pool.core.settings import Settings
from tests.plugins.processes import run_spawned
from tests.plugins.stores import StoreBackend

from . import _mp_worker

PROCESSES = 4
ROUNDS = 30


@pytest.mark.slow
def test_many_processes_open_the_circuit_once(store_backend: StoreBackend, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, log_file=None, **store_backend.settings)
    out = run_spawned(_mp_worker.run, [(settings, ROUNDS)] * PROCESSES, timeout=60)

    moves = [m for o in out for m in o["moves"]]
    assert moves == [("closed", "open")]
    # Each process holds at most one permit at a time: beyond the threshold, only those in flight
    # when the circuit opened got through.
    permits = sum(o["permits"] for o in out)
    assert _mp_worker.THRESHOLD <= permits <= _mp_worker.THRESHOLD + PROCESSES - 1
    assert sum(o["probes"] for o in out) == 0
    assert sum(o["after_denial"] for o in out) == 0
    assert sum(o["late_permits"] for o in out) == 0
