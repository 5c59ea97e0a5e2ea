"""Exactness under contention: many processes, one pool, far more demand than capacity."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from claude_pool.core.settings import Settings
from tests.capacity._hammer import CANDIDATES, LIMITS, hammer
from tests.plugins.processes import run_spawned
from tests.plugins.stores import StoreBackend

DURATION = 5.0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("store_backend", "processes"), [("embedded", 4), ("redis", 8)], indirect=["store_backend"]
)
def test_many_processes_never_exceed_capacity(
    store_backend: StoreBackend, processes: int, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, log_file=None, **store_backend.settings)
    results = run_spawned(hammer, [(settings, DURATION)] * processes, timeout=120)
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
