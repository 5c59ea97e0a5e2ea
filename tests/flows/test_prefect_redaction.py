"""A key that passes through a run never reaches Prefect in the clear: not its database (logs,
states, artifacts, parameters), not its result files, not the worker's console."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler
from prefect.settings import get_current_settings

from claude_pool.core.logs import log_event
from claude_pool.simulator import FaultRule
from claude_pool_flows import delegate

from .conftest import FlowWorld

CANARY = "sk-ant-api03-CANARYprefect" + "z" * 70 + "Q9r8"


@flow(log_prints=True)
async def _says_the_key_everywhere() -> None:
    """A run in which every kind of log line quotes the key (not a parameter: Prefect stores those
    as given, and a caller who puts a key in a parameter has published it)."""
    key = CANARY
    from claude_pool_tasks.context import runtime

    runtime()  # a task or flow of ours starts the runtime, and with it the log forwarding
    pool_logger = logging.getLogger("claude_pool.pool")
    pool_logger.warning("upstream said %s", key)
    log_event(pool_logger, logging.WARNING, "attempt failed", error=f"401 for {key}")
    get_run_logger().warning("prefect's own logger: %s", key)
    print(f"printed: {key}")


def _files_holding(root: Path, text: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text in p.read_bytes()]


async def test_a_canary_key_appears_nowhere_in_prefects_database_files_or_console(
    make_flow_world: Callable[..., FlowWorld], capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    world = make_flow_world()
    for key in world.sim.keys:  # the accounts' own keys go out on every call
        assert key.key.startswith("sk-ant-")
    world.sim.revoke("acct-1")
    world.sim.add_fault(FaultRule(kind="error", status=500, targets=("acct-2",)))
    await delegate(organization_id="tenant-a", message="hello", max_tokens=20, return_state=True)
    said = await _says_the_key_everywhere(return_state=True)
    await APILogHandler.aflush()
    settings = get_current_settings()
    database = Path(str(settings.server.database.connection_url.get_secret_value()).split("///", 1)[1])
    secrets = [CANARY.encode(), *(k.key.encode() for k in world.sim.keys)]
    console = capfd.readouterr()
    for secret in secrets:
        assert not _files_holding(database.parent, secret), "a key reached Prefect's database"
        assert not _files_holding(Path(settings.results.local_storage_path), secret)
        assert not _files_holding(tmp_path, secret), "a key reached a log or result file"
        assert secret.decode() not in console.out + console.err
    # the lines are there, each with the key cut to its last four characters
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[said.state_details.flow_run_id]))
        )
    quoted = [log.message for log in logs if "sk-ant-…Q9r8" in log.message]
    assert len(quoted) == 4, [log.message for log in logs]
