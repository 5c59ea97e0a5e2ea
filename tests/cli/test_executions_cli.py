"""``claude-pool executions list --flow-run``: the rows of one Prefect flow run, found from its id."""

from __future__ import annotations

import json
from pathlib import Path

from claude_pool.pool.models import DelegationRequest
from claude_pool.records.executions import ExecutionStore
from claude_pool.storage import Database

from .test_cli import run

RUN_A = "0b4f2c52-1d53-4c1e-9a55-6f0e8f3d1a01"
RUN_B = "7a9d0e6b-2b8c-4f7a-8c3e-1d2e3f4a5b6c"


def test_executions_list_by_flow_run_shows_only_that_runs_rows(tmp_path: Path, encryption_key: str) -> None:
    db = Database(f"sqlite:///{tmp_path / '.claude-pool' / 'claude-pool.db'}")
    db.upgrade()
    store = ExecutionStore(db)
    mine, _ = store.start(DelegationRequest(organization_id="o", message="mine"), flow_run_id=RUN_A)
    other, _ = store.start(DelegationRequest(organization_id="o", message="other"), flow_run_id=RUN_B)
    db.dispose()
    env = {"ENCRYPTION_KEY": encryption_key}
    table = run(tmp_path, "executions", "list", "--flow-run", RUN_A, env=env)
    assert table.returncode == 0, table.stderr
    assert mine.id in table.stdout and RUN_A in table.stdout and other.id not in table.stdout
    listed = json.loads(run(tmp_path, "executions", "list", "--flow-run", RUN_A, "--json", env=env).stdout)
    assert [(r["id"], r["flow_run_id"]) for r in listed] == [(mine.id, RUN_A)]
