"""``claude-pool serve`` as a user runs it: a real process, tokens from the environment, Ctrl-C."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import claude_pool.http
from claude_pool.cli.serve_cmd import client_url
from tests.http.harness import _free_port
from tests.plugins.processes import python_module, wait_while_running

HTTP_MODULES = ["app", "auth", "admin", "context", "errors", "events_sse", "execute", "health", "schemas"]


@pytest.mark.parametrize("name", HTTP_MODULES)
def test_modules_export_what_they_define(name: str) -> None:
    module = importlib.import_module(f"claude_pool.http.{name}")
    assert module.__all__ and all(hasattr(module, attr) for attr in module.__all__)
    assert all(hasattr(claude_pool.http, attr) for attr in claude_pool.http.__all__)


def test_serve_command(tmp_path: Path) -> None:
    port = _free_port()
    token = "serve-test-token-" + "x" * 16
    env = {
        **os.environ,
        "CLAUDE_POOL_HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "ENCRYPTION_KEY": os.urandom(32).hex(),
        "CLAUDE_POOL_API_TOKENS": f'{{"{token}": "*"}}',
        "LOG_FILE": str(tmp_path / "app.log"),
    }
    env.pop("REDIS_URL", None)
    env.pop("BASE_URL", None)  # the banner's client URL then follows --host and --port
    subprocess.run(
        [sys.executable, "-m", "claude_pool", "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    process = python_module(
        "claude_pool",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        env=env,
        cwd=tmp_path,
        stderr=subprocess.STDOUT,
    )

    def health_answer() -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        except httpx.TransportError:
            return None

    try:
        health = wait_while_running(process, health_answer, what="the server came up", timeout=30)
        assert health.status_code == 200 and health.json()["database"]["status"] == "up"
        assert health.json()["pool"]["total"] == 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert client.get("/openapi.json").status_code == 401
            schema = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"})
            assert schema.status_code == 200 and "/api/orchestrator/execute" in schema.json()["paths"]
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    assert token not in output
    # The banner sends clients where this server listens, not to the default port.
    assert f"clients: http://127.0.0.1:{port})" in output and ":3000" not in output, output


@pytest.mark.parametrize(
    ("host", "port", "base_url", "url"),
    [
        pytest.param("127.0.0.1", 8080, None, "http://127.0.0.1:8080", id="loopback"),
        pytest.param("localhost", 9000, "", "http://localhost:9000", id="a-name"),
        pytest.param("0.0.0.0", 8080, None, "http://127.0.0.1:8080", id="every-ipv4-interface"),  # noqa: S104
        pytest.param("::", 8080, None, "http://[::1]:8080", id="every-ipv6-interface"),
        pytest.param("fd00::7", 8080, None, "http://[fd00::7]:8080", id="an-ipv6-address"),
        pytest.param("0.0.0.0", 8080, "https://pool.example.com", "https://pool.example.com", id="base-url"),  # noqa: S104
    ],
)
def test_the_client_url_follows_host_and_port_unless_base_url_is_set(
    host: str, port: int, base_url: str | None, url: str
) -> None:
    assert client_url(host, port, base_url) == url


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        pytest.param(
            ("DATABASE_URL", "sqlite:///{home}/new.db"), "claude-pool db upgrade", id="unmigrated-database"
        ),
        pytest.param(("CLAUDE_POOL_API_TOKENS", "{{oops"), "CLAUDE_POOL_API_TOKENS", id="malformed-tokens"),
    ],
)
def test_serve_refuses_to_start_and_says_why(tmp_path: Path, setting: tuple[str, str], said: str) -> None:
    name, value = setting
    env = {**os.environ, "CLAUDE_POOL_HOME": str(tmp_path), name: value.format(home=tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "claude_pool", "serve", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and said in done.stderr and "Traceback" not in done.stderr
