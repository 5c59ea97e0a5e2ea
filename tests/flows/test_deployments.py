"""prefect.yaml for real: `prefect deploy --all` against a local Prefect server, a process worker
running the installed package, a scheduled capacity sync at the config's interval, and
`prefect deployment run` delegations (as the UI triggers them) read back through the Prefect client."""

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
from claude_pool.simulator import FaultRule, RunningSimulator
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


def _run_id(output: str) -> str:
    return next(w for w in output.split() if w.count("-") == 4 and len(w.strip("'\"")) == 36).strip("'\"")


def _read_back(api: str, run_id: str, results: Path) -> dict[str, Any]:
    """What the UI shows of a flow run, read through the Prefect client: its name, state, markdown
    artifacts by key, log lines and the persisted result (None when there is none)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    settings = {PREFECT_API_URL: api, PREFECT_LOCAL_STORAGE_PATH: results}
    with temporary_settings(settings), get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        # the persisted result, read from the result store as Prefect's UI and client do
        result = run.state.result(raise_on_failure=False) if run.state and run.state.is_completed() else None
    return {
        "name": run.name,
        "state": run.state.type.value if run.state else None,
        "artifacts": {a.key: a.data for a in artifacts if a.key},
        "logs": [log.message for log in logs],
        "result": result,
    }


@pytest.mark.slow
def test_deploy_all_then_a_worker_runs_the_schedule_and_triggered_delegations_read_back_as_the_ui_does(
    prefect_server: dict[str, str],
    anthropic_sim_factory: Callable[..., RunningSimulator],
    tmp_path: Path,
    encryption_key: str,
) -> None:
    sim = anthropic_sim_factory(DEFAULT)
    home = tmp_path / "pool-home"
    config = tmp_path / "config.json"
    # an interval of our own, and a breaker that opens at the first failure (the automation's cue)
    config.write_text(json.dumps({"capacity": {"syncIntervalSeconds": 45}, "circuitBreaker": {"failureThreshold": 1}}))
    pool_env = {
        "CLAUDE_POOL_HOME": str(home),
        "CLAUDE_POOL_CONFIG": str(config),
        "ENCRYPTION_KEY": encryption_key,
        "ANTHROPIC_BASE_URL": sim.base_url,
        "LOG_FILE": str(tmp_path / "app.log"),
        "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "results"),
    }
    runtime = Runtime.from_env(Settings.from_env({**pool_env}))
    names = {v: k for k, v in register_simulated_keys(runtime, sim).items()}
    env = {**prefect_server, **pool_env}
    for name in ("DATABASE_URL", "REDIS_URL", "SLACK_BOT_TOKEN"):
        env.pop(name, None)
    api = env["PREFECT_API_URL"]

    def prefect(*args: str, cwd: Path = ROOT) -> str:
        done = subprocess.run([PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    prefect("work-pool", "create", "claude-pool", "--type", "process")
    prefect_yaml = tmp_path / "prefect.yaml"  # written from the config, as the README says
    prefect_yaml.write_text((ROOT / "prefect.yaml").read_text())
    subprocess.run([sys.executable, "-m", "claude_pool_flows.schedules", str(prefect_yaml)], env=env, check=True)
    deployed = prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_yaml))
    for name in ("delegate", "delegate-batch", "capacity-sync", "quota-sweep", "health-check"):
        assert f"Deployment '{name}/{name}' successfully created" in " ".join(deployed.split())
    [sync_deployment] = _api(api, "/deployments/filter", {"deployments": {"name": {"any_": ["capacity-sync"]}}})
    [sync_schedule] = sync_deployment["schedules"]
    assert sync_schedule["schedule"]["interval"] == 45.0  # the config's, written into prefect.yaml
    assert sync_deployment["global_concurrency_limit"]["limit"] == 1
    assert sync_deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"

    worker_dir = tmp_path / "worker"  # no clone of the project: the installed package runs
    worker_dir.mkdir()
    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "claude-pool"],
        env=env,
        cwd=worker_dir,
        stdout=worker_log,
        stderr=worker_log,
    )

    def run_to_the_end(run_id: str) -> str:
        def ended() -> str:
            state = str(_api(api, f"/flow_runs/{run_id}")["state"]["type"])
            assert state != "CRASHED", (tmp_path / "worker.log").read_text()[-3000:]
            return state if state in ("COMPLETED", "FAILED") else ""

        return str(_wait(f"flow run {run_id}", ended, 180))

    try:
        asked = _run_id(prefect(
            "deployment", "run", "delegate/delegate", "-p", "organization_id=tenant-a",
            "-p", "message=hello from a deployment", "-p", "max_tokens=20", "-p", "user_id=u-7",
        ))
        assert run_to_the_end(asked) == "COMPLETED"
        sim.add_fault(FaultRule(kind="error", status=500))
        failing = _run_id(prefect(
            "deployment", "run", "delegate/delegate", "-p", "organization_id=tenant-a",
            "-p", "message=this one fails", "-p", "max_tokens=20",
        ))
        assert run_to_the_end(failing) == "FAILED"

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

        def health_check_by_automation() -> bool:
            runs = _api(api, "/flow_runs/filter", {"flows": {"name": {"any_": ["health-check"]}}})
            return any((r.get("created_by") or {}).get("type") == "AUTOMATION" for r in runs)

        # the failing run opened both breakers: the shipped automation started a health check
        _wait("a health-check run started by the automation", health_check_by_automation, 120)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        worker_log.close()

    with runtime.db.engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT flow_run_id, id FROM orchestrator_executions")).all())
        snapshots = conn.execute(sa.text("SELECT count(*) FROM capacity_snapshots")).scalar_one()
    assert set(rows) == {asked, failing}
    assert snapshots >= len(sim.keys)

    shown = _read_back(api, asked, tmp_path / "results")
    assert shown["name"] == "tenant-a · user u-7"
    answer = shown["result"]
    assert answer["status"] == "succeeded" and answer["execution_id"] == rows[asked]
    assert answer["text"] in shown["artifacts"]["delegate-execution"]
    assert rows[asked] in shown["artifacts"]["delegate-execution"]
    account = names[answer["account_id"]]
    assert any(line.startswith("account selection") and f"account={account}" in line for line in shown["logs"])

    failed = _read_back(api, failing, tmp_path / "results")
    assert failed["state"] == "FAILED" and failed["name"] == "tenant-a"
    artifact = failed["artifacts"]["delegate-execution"]
    assert rows[failing] in artifact and "# Delegation failed" in artifact
    assert all(f"| {name} | " in artifact for name in names.values()) and "| 500 |" in artifact
    runtime.close()
