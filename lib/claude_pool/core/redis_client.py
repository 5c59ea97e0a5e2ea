"""The one way the long-lived stores (capacity, breakers, events) connect to Redis.

- A blocking pool: past ``max_connections`` concurrent commands a call waits for a free connection
  instead of failing with "Too many connections", which a worker with a hundred delegations
  waiting for capacity reaches at once.
- One retry on a fresh connection: after an outage the pool still holds connections the outage
  broke, and redis-py's ``from_url`` retries nothing, so each of them would fail one more call
  after Redis is back. Our scripts are safe to repeat: settle and breaker verdicts are idempotent,
  and a repeated acquire only over-charges until its lease is reclaimed.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["MAX_CONNECTIONS", "connect"]

MAX_CONNECTIONS = 100
CONNECTION_WAIT_SECONDS = 30.0


def connect(
    url: str, *, decode_responses: bool = False, max_connections: int = MAX_CONNECTIONS
) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=CONNECTION_WAIT_SECONDS,
        retry=Retry(NoBackoff(), 1),
        decode_responses=decode_responses,
    )
    return aioredis.Redis.from_pool(pool)
