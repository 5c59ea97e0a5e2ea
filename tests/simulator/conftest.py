from __future__ import annotations

from collections.abc import Callable, Iterator

import anthropic
import pytest

from claude_pool.simulator import RunningSimulator

#: A current model name: the 2.x client warns (and filterwarnings=error fails) on deprecated ones.
MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def client_for() -> Iterator[Callable[..., anthropic.Anthropic]]:
    """``client_for(sim, key_name_or_secret)``: a real client with no retries, closed after the test."""
    clients: list[anthropic.Anthropic] = []

    def make(sim: RunningSimulator, key: str = "acct-1", **options: object) -> anthropic.Anthropic:
        secret = sim.key(key).key if not key.startswith("sk-ant-") else key
        client = anthropic.Anthropic(api_key=secret, base_url=sim.base_url, max_retries=0, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
