"""prefect.yaml for real: `prefect deploy --all` against a local Prefect server, a process worker
that clones the project, a scheduled capacity sync and a `prefect deployment run` delegation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from claude_pool.core.settings import Settings
from claude_pool.runtime import Runtime
from claude_pool.simulator import RunningSimulator
from tests.flows.conftest import DEFAULT
from tests.plugins.runtimes import register_simulated_keys

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 (loopback only)
        url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 (loopback only)
        return json.loads(reply.read() or b"null")


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        # create scheduled runs within seconds of deploying, not a minute later
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
    }
    for name in ("PREFECT_API_KEY",):
        env.pop(name, None)
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    try:

        def healthy() -> bool:
            try:
                return _api(env["PREFECT_API_URL"], "/health") is True
            except OSError:
                return False

        _wait("the Prefect server", healthy, 90)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_deploy_all_then_a_worker_runs_the_schedule_and_a_triggered_delegation(
    prefect_server: dict[str, str],
    anthropic_sim_factory: Callable[..., RunningSimulator],
    tmp_path: Path,
    encryption_key: str,
) -> None:
    sim = anthropic_sim_factory(DEFAULT)
    home = tmp_path / "pool-home"
    pool_env = {
        "CLAUDE_POOL_HOME": str(home),
        "CLAUDE_POOL_CONFIG": str(tmp_path / "no-config.json"),
        "ENCRYPTION_KEY": encryption_key,
        "ANTHROPIC_BASE_URL": sim.base_url,
        "LOG_FILE": str(tmp_path / "app.log"),
    }
    runtime = Runtime.from_env(Settings.from_env({**pool_env}))
    register_simulated_keys(runtime, sim)
    env = {**prefect_server, **pool_env, "CLAUDE_POOL_REPO": str(ROOT)}
    for name in ("DATABASE_URL", "REDIS_URL", "SLACK_BOT_TOKEN"):
        env.pop(name, None)
    api = env["PREFECT_API_URL"]

    def prefect(*args: str, cwd: Path = ROOT) -> str:
        done = subprocess.run([PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    prefect("work-pool", "create", "claude-pool", "--type", "process")
    deployed = prefect("--no-prompt", "deploy", "--all")
    for name in ("delegate", "delegate-batch", "capacity-sync", "quota-sweep", "health-check"):
        assert f"Deployment '{name}/{name}' successfully created" in " ".join(deployed.split())

    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "claude-pool"],
        env=env,
        cwd=worker_dir,
        stdout=worker_log,
        stderr=worker_log,
    )
    try:
        triggered = prefect(
            "deployment",
            "run",
            "delegate/delegate",
            "-p",
            "organization_id=tenant-a",
            "-p",
            "message=hello from a deployment",
            "-p",
            "max_tokens=20",
        )
        run_id = next(w for w in triggered.split() if w.count("-") == 4 and len(w.strip("'\"")) == 36).strip(
            "'\""
        )

        def delegate_done() -> bool:
            state = _api(api, f"/flow_runs/{run_id}")["state"]["type"]
            assert state not in ("FAILED", "CRASHED"), (tmp_path / "worker.log").read_text()[-3000:]
            return bool(state == "COMPLETED")

        _wait("the triggered delegate run", delegate_done, 180)

        def capacity_sync_done() -> bool:
            runs = _api(
                api,
                "/flow_runs/filter",
                {
                    "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
                    "flows": {"name": {"any_": ["capacity-sync"]}},
                },
            )
            return bool(runs)

        _wait("a scheduled capacity-sync run", capacity_sync_done, 180)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        worker_log.close()

    with runtime.db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, flow_run_id FROM orchestrator_executions")).all()
        snapshots = conn.execute(sa.text("SELECT count(*) FROM capacity_snapshots")).scalar_one()
    assert rows == [("succeeded", run_id)]
    assert snapshots >= len(sim.keys)
    runtime.close()
