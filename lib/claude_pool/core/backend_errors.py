"""The one translation of a backend's failures into :class:`BackendUnavailable`.

The capacity store, the breaker store and the event bus each talk to Redis (or, embedded, to a
SQLite file); whichever fails, the caller sees one exception type and one message shape:
``<backend> unavailable: <operation>: <error type>: <error text>``. The text is redacted: a
server's error can quote a command's arguments back, and a key must never reach a message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from redis.exceptions import RedisError

from claude_pool.core.errors import BackendUnavailable
from claude_pool.core.redaction import redact

__all__ = ["REDIS_ERRORS", "backend_errors", "redis_errors"]

# OSError too: a socket can fail outside redis-py's own wrapping (while a broken connection is
# torn down, for one), and a store promises BackendUnavailable, never a raw socket error.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError)


@contextmanager
def backend_errors(backend: str, operation: str, errors: tuple[type[Exception], ...]) -> Iterator[None]:
    """Raise :class:`BackendUnavailable` (chained) for any of ``errors`` raised inside the block."""
    try:
        yield
    except errors as exc:
        detail = f"{operation}: {type(exc).__name__}: {redact(str(exc))}"
        raise BackendUnavailable(backend, detail) from exc


def redis_errors(operation: str) -> AbstractContextManager[None]:
    """:func:`backend_errors` for Redis: ``with redis_errors("capacity acquire"): ...``."""
    return backend_errors("redis", operation, REDIS_ERRORS)
