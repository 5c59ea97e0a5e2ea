"""A flow worker serves no HTTP: it pushes its pool metrics to a Prometheus Pushgateway after each
task's pool closes. The gateway here is a stand-in that records what it is sent (an external
service, as a real Pushgateway would take the same PUT)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from claude_pool.pool.models import DelegationRequest
from claude_pool.simulator import RunningSimulator
from claude_pool_tasks.context import open_pool, runtime
from tests.plugins.runtimes import register_simulated_keys

ORG = "tenant-pushed"


class _Gateway(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pushes: list[tuple[str, str, str]] = []  # (method, path, body)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Gateway

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.server.pushes.append(("PUT", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[_Gateway]:
    server = _Gateway()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def worker_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encryption_key: str, anthropic_sim: RunningSimulator
) -> RunningSimulator:
    for name in ("DATABASE_URL", "REDIS_URL", "SLACK_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLAUDE_POOL_HOME", str(tmp_path))
    monkeypatch.setenv("ENCRYPTION_KEY", encryption_key)
    monkeypatch.setenv("LOG_FILE", "")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_sim.base_url)
    return anthropic_sim


def _successes(body: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "claude_pool_requests_total"
        and sample.labels.get("organization") == ORG
        and sample.labels.get("outcome") == "success"
    )


async def _run_task(requests: int) -> None:
    """What a task does: open the worker's pool, delegate, close it."""
    async with open_pool(events=False) as pool:
        for n in range(requests):
            await pool.delegate(DelegationRequest(organization_id=ORG, message=f"q{n}", max_tokens=10))


async def test_a_worker_pushes_its_counters_after_each_task_and_they_add_up(
    worker_env: RunningSimulator, gateway: _Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_PUSHGATEWAY_URL", gateway.url)
    register_simulated_keys(runtime(), worker_env, organization_id=ORG)
    await _run_task(2)
    await _run_task(1)
    assert [method for method, _, _ in gateway.pushes] == ["PUT", "PUT"]
    assert all(path.startswith("/metrics/job/claude-pool-worker/instance/") for _, path, _ in gateway.pushes)
    assert [_successes(body) for _, _, body in gateway.pushes] == [2, 3]
    # Only what the worker's pool did: the stores are the server's to show.
    assert "claude_pool_headroom_ratio" not in gateway.pushes[-1][2]
    for spec in worker_env.keys:
        assert spec.key not in gateway.pushes[-1][2]


async def test_a_gateway_that_is_down_never_fails_the_task(
    worker_env: RunningSimulator, gateway: _Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_PUSHGATEWAY_URL", gateway.url)
    register_simulated_keys(runtime(), worker_env, organization_id=ORG)
    gateway.shutdown()
    gateway.server_close()
    await _run_task(1)  # the pool closes, the push is refused and logged, nothing raises
    assert gateway.pushes == []
