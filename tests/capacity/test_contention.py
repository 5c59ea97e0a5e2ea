"""Exactness under contention: many processes, one pool, far more demand than capacity."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path

import pytest

from tests.capacity._hammer import CANDIDATES, LIMITS, hammer

DURATION = 5.0


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "processes"), [("embedded", 4), ("redis", 8)])
def test_many_processes_never_exceed_capacity(
    backend: str, processes: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "redis":
        target, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    else:
        target, prefix = str(tmp_path / "capacity.db"), ""
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds threads and loops
    ready = ctx.Barrier(processes)
    queue = ctx.Queue()
    workers = [ctx.Process(target=hammer, args=(backend, target, prefix, ready, DURATION, queue))
               for _ in range(processes)]
    for w in workers:
        w.start()
    try:
        results = [queue.get(timeout=120) for _ in workers]
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.terminate()
    granted: Counter[str] = Counter()
    for counts, _first, _last, _attempts in results:
        granted.update(counts)
    attempts = sum(r[3] for r in results)
    outer = max(r[2] for r in results) - min(r[1] for r in results)  # every grant happened inside this
    inner = min(r[2] for r in results) - max(r[1] for r in results)  # every process was asking inside this
    rate = LIMITS.rpm / 60
    assert attempts > 2 * sum(LIMITS.rpm + rate * outer for _ in CANDIDATES), attempts
    for c in CANDIDATES:
        assert granted[c.bucket_id] <= LIMITS.rpm + rate * outer + 1e-6, (granted, outer)
        assert granted[c.bucket_id] >= 0.95 * (LIMITS.rpm + rate * inner), (granted, inner)
