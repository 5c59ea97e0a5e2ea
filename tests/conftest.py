"""Shared fixtures: real PostgreSQL and Redis servers, each test run in its own database / key prefix.

Outside CI a missing server skips its tests with a loud reason; under ``CI=true`` it fails them.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.plugins.simulators", "tests.plugins.runtimes", "tests.plugins.stores"]

# Tests of everything but the cold start begin on buckets as full as their limits say, whatever the
# product's default (``empty``, whose calibration probes would add calls to the counts these tests
# assert): here for every runtime built from the environment, in this process and its children;
# see also tests.plugins.runtimes.TRUSTING_LIMITS. The cold start's own tests set it in their config.
os.environ.setdefault("CLAUDE_POOL__capacity__coldStart", "full")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _server_missing(what: str, detail: str) -> None:
    message = f"*** {what} is not answering ({detail}); its tests cannot run ***"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing server is a failure)", pytrace=False)
    pytest.skip(message)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    if not _port_open("127.0.0.1", 5432):
        _server_missing("PostgreSQL", "127.0.0.1:5432")
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        _server_missing("Redis", f"{REDIS_TEST_URL}: {exc}")
    return REDIS_TEST_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    prefix = f"claude-pool-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def encryption_key() -> str:
    return os.urandom(32).hex()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'claude-pool.db'}"


@pytest.fixture
def fresh_postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """An empty PostgreSQL database of this test's own (migrations start from nothing), dropped after."""
    import psycopg

    name = f"claude_pool_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _server_missing("PostgreSQL", str(exc).splitlines()[0])
    yield f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: the storage tests run on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'claude-pool.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture(autouse=True)
def _library_logging_restored() -> Iterator[None]:
    """Logging is process-wide: a test that configures the library's logging for a Prefect worker
    (``console=False`` stops propagation to the root logger) must not take later tests' records
    away from pytest's capture."""
    logger = logging.getLogger("claude_pool")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    for handler in [h for h in logger.handlers if h not in handlers]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(level)
    logger.propagate = propagate
