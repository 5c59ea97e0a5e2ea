"""The one translation of backend failures: ``BackendUnavailable``, one message shape, redacted."""

from __future__ import annotations

import sqlite3

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from claude_pool.core.backend_errors import backend_errors, redis_errors
from claude_pool.core.errors import BackendUnavailable

KEY = "sk-ant-api03-" + "k" * 40 + "WXYZ"


@pytest.mark.parametrize(
    "error", [RedisConnectionError(f"Error connecting to {KEY}:6379"), ResponseError(f"ERR bad {KEY}")]
)
def test_a_redis_error_becomes_backend_unavailable_without_the_key(error: Exception) -> None:
    with pytest.raises(BackendUnavailable) as info, redis_errors("capacity acquire"):
        raise error
    message = str(info.value)
    assert message.startswith(f"redis unavailable: capacity acquire: {type(error).__name__}: ")
    assert KEY not in message and "sk-ant-…WXYZ" in message
    assert info.value.backend == "redis" and info.value.__cause__ is error


def test_a_socket_error_is_a_backend_failure_too() -> None:
    with pytest.raises(BackendUnavailable, match="breaker allow: ConnectionResetError"), redis_errors("breaker allow"):
        raise ConnectionResetError("connection reset by peer")


def test_other_errors_pass_through_untouched() -> None:
    with pytest.raises(ValueError, match="not a backend failure"), redis_errors("events publish"):
        raise ValueError("not a backend failure")


def test_the_embedded_stores_name_their_own_errors() -> None:
    with (
        pytest.raises(BackendUnavailable, match=r"^embedded unavailable: capacity view on x\.db: OperationalError"),
        backend_errors("embedded", "capacity view on x.db", (sqlite3.Error,)),
    ):
        raise sqlite3.OperationalError("database is locked")
