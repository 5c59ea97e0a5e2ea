"""One worker process of test_multiprocess.py: its own store, its own event loop."""

from __future__ import annotations

import asyncio
from typing import Any

from claude_pool.breaker import BreakerListener, CircuitBreaker, Permit, Transition, open_breaker_store
from claude_pool.core.config import BreakerConfig
from claude_pool.core.settings import Settings
from claude_pool.pool.classify import BreakerEffect

ACCOUNT = "acct-mp"
THRESHOLD = 5


class _Heard(BreakerListener):
    def __init__(self) -> None:
        self.moves: list[tuple[str, str]] = []

    async def on_transition(self, transition: Transition) -> None:
        self.moves.append((transition.from_state.value, transition.to_state.value))


def run(settings: Settings, rounds: int, barrier: Any, results: Any) -> None:
    results.put(asyncio.run(_run(settings, rounds, barrier)))


async def _run(settings: Settings, rounds: int, barrier: Any) -> dict[str, Any]:
    """The breaker store ``settings`` call for: Redis, or the embedded file under their home."""
    store = open_breaker_store(settings)
    heard = _Heard()
    # A long timeout: no probe may be let through while the test runs.
    cb = CircuitBreaker(store, BreakerConfig(failure_threshold=THRESHOLD, timeout_seconds=300), listeners=[heard])
    permits = probes = after_denial = 0
    denied_once = False
    try:
        await cb.states([ACCOUNT])  # connect before the start line, so all start together
        barrier.wait()
        for _ in range(rounds):
            permit = await cb.allow(ACCOUNT)
            if isinstance(permit, Permit):
                permits += 1
                probes += permit.probe
                after_denial += denied_once
                await cb.record(ACCOUNT, BreakerEffect.FAILURE, permit=permit)
            else:
                denied_once = True
        barrier.wait()
        late = [await cb.allow(ACCOUNT) for _ in range(20)]
    finally:
        await cb.aclose()
    return {
        "moves": heard.moves,
        "permits": permits,
        "probes": probes,
        "after_denial": after_denial,
        "late_permits": sum(isinstance(p, Permit) for p in late),
    }
