"""``claude-pool executions``: the delegation records, without a database browser."""

from __future__ import annotations

import json

import click

from claude_pool.cli.common import echo_json, echo_table, handle_errors, migrated_runtime
from claude_pool.records.executions import ExecutionStore

__all__ = ["executions"]


@click.group()
def executions() -> None:
    """Delegations recorded in orchestrator_executions."""


@executions.command("list")
@click.option("--org", "organization_id")
@click.option("--status")
@click.option("--flow-run", "flow_run_id", help="Only the executions of this Prefect flow run (its id).")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def list_(
    organization_id: str | None, status: str | None, flow_run_id: str | None, limit: int, as_json: bool
) -> None:
    """The newest executions first."""
    rt = migrated_runtime()
    rows = ExecutionStore(rt.db).list(
        organization_id=organization_id, status=status, flow_run_id=flow_run_id, limit=limit
    )
    if as_json:
        echo_json([r.model_dump(exclude={"request_json", "response_text"}) for r in rows])
        return
    names = {a.id: a.name for a in rt.accounts.list()}
    echo_table(
        ["id", "created", "flow run", "org", "status", "account", "attempts", "in", "out", "latency ms", "error"],
        [
            [
                r.id,
                r.created_at.isoformat(timespec="seconds"),
                r.flow_run_id or "-",
                r.organization_id,
                r.status,
                names.get(r.account_id or "", r.account_id or "-"),
                r.attempts,
                r.input_tokens,
                r.output_tokens,
                f"{r.latency_ms:.0f}" if r.latency_ms is not None else "",
                r.error_type or "",
            ]
            for r in rows
        ],
    )


@executions.command("show")
@click.argument("execution_id")
@handle_errors
def show(execution_id: str) -> None:
    """One execution, with its request, answer and attempts."""
    rt = migrated_runtime()
    row = ExecutionStore(rt.db).get(execution_id)
    data = row.model_dump()
    data["request"] = json.loads(data.pop("request_json") or "{}")
    data["attempts_detail"] = json.loads(data.pop("accounts_tried") or "[]")
    echo_json(data)
