"""Fixtures that start the local Anthropic and Slack simulators on free loopback ports.

    def test_x(anthropic_sim): ...                  # 3 accounts, generous limits
    def test_y(anthropic_sim_factory):
        sim = anthropic_sim_factory(Scenario.uniform(accounts=2, rpm=60, round_tokens_to=1))
    def test_z(slack_sim): ...                      # Slack's own pace: 1 message/s/channel
    def test_w(slack_sim_factory): slack_sim_factory(rate_per_channel=100, burst=100)

Each is function-scoped: a test gets fresh buckets and counts, and its servers stop after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from claude_pool.simulator import KeySpec, RunningSimulator, RunningSlackSimulator, Scenario, SlackConfig
from tests.plugins.closing import closed_after

__all__ = [
    "DEFAULT_TEST_SCENARIO",
    "anthropic_sim",
    "anthropic_sim_factory",
    "drain_key",
    "slack_sim",
    "slack_sim_factory",
]

#: Limits no ordinary test reaches, so only tests that mean to hit a limit see 429s.
DEFAULT_TEST_SCENARIO = Scenario.uniform(accounts=3, rpm=10_000, itpm=10_000_000, otpm=2_000_000, seed=0)


@pytest.fixture
def anthropic_sim_factory() -> Iterator[Callable[..., RunningSimulator]]:
    def start(scenario: Scenario | None = None, **kwargs: Any) -> RunningSimulator:
        return RunningSimulator(scenario or DEFAULT_TEST_SCENARIO, **kwargs).start()

    yield from closed_after(start)


@pytest.fixture
def anthropic_sim(anthropic_sim_factory: Callable[..., RunningSimulator]) -> RunningSimulator:
    return anthropic_sim_factory()


@pytest.fixture
def slack_sim_factory() -> Iterator[Callable[..., RunningSlackSimulator]]:
    def start(config: SlackConfig | None = None, **options: Any) -> RunningSlackSimulator:
        if options:
            config = SlackConfig(**{**(config or SlackConfig()).__dict__, **options})
        return RunningSlackSimulator(config).start()

    yield from closed_after(start)


@pytest.fixture
def slack_sim(slack_sim_factory: Callable[..., RunningSlackSimulator]) -> RunningSlackSimulator:
    return slack_sim_factory()


def drain_key(sim: RunningSimulator, key: KeySpec, *, most: int = 1000) -> None:
    """Another client spends ``key``'s requests until upstream refuses one (a 429), then the
    simulator forgets the counts (not the buckets): a pool starting now meets a drained key."""
    import anthropic

    client = anthropic.Anthropic(api_key=key.key, base_url=sim.base_url, max_retries=0)
    try:
        for _ in range(most):
            try:
                client.messages.create(
                    model="claude-sonnet-5-5", max_tokens=1, messages=[{"role": "user", "content": "x"}]
                )
            except anthropic.RateLimitError:
                break
    finally:
        client.close()
    sim.reset(counters=True, buckets=False)
