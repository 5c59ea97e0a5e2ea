"""``claude-pool alerts``: the quota alerts as stored (sent or waiting for a later sweep)."""

from __future__ import annotations

from typing import Any

import click

from claude_pool.cli.common import echo_json, echo_table, handle_errors, migrated_runtime
from claude_pool.quota import AlertRecord, list_alerts

__all__ = ["alerts"]


def _as_dict(record: AlertRecord) -> dict[str, Any]:
    a = record.alert
    return {
        "id": a.id,
        "organization_id": a.organization_id,
        "account_id": a.account_id,
        "account_name": record.account_name,
        "metric": a.metric,
        "threshold": a.threshold,
        "kind": a.kind,
        "window": a.window,
        "observed": a.observed,
        "limit": a.limit,
        "fraction": a.fraction,
        "created_at": a.created_at.isoformat() if a.created_at else None,
        "sent_at": a.sent_at.isoformat() if a.sent_at else None,
        "send_attempts": a.send_attempts,
        "last_error": a.last_error,
        "slack_channel": a.slack_channel,
        "slack_ts": a.slack_ts,
    }


@click.group()
def alerts() -> None:
    """Quota alerts (80 / 95 / 100 % of a limit, and recoveries)."""


@alerts.command("list")
@click.option("--org", "organization_id", help="Only this organization (tenant).")
@click.option("--unsent", is_flag=True, help="Only alerts not yet accepted by Slack.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def list_(organization_id: str | None, unsent: bool, limit: int, as_json: bool) -> None:
    """List alerts, newest first."""
    rt = migrated_runtime()
    records = list_alerts(rt.db, organization_id=organization_id, unsent=unsent, limit=limit)
    if as_json:
        echo_json([_as_dict(r) for r in records])
        return
    rows = []
    for r in records:
        a = r.alert
        sent = a.sent_at.strftime("%Y-%m-%dT%H:%M:%SZ") if a.sent_at else f"no ({a.send_attempts} tries)"
        rows.append(
            [
                a.id,
                a.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                a.organization_id,
                r.account_name or a.account_id,
                a.metric,
                a.kind,
                f"{a.threshold:.0%}",
                f"{a.observed:g}/{a.limit:g}",
                a.window,
                sent,
                (a.last_error or "")[:60],
            ]
        )
    echo_table(
        [
            "id",
            "created",
            "org",
            "account",
            "metric",
            "kind",
            "threshold",
            "observed/limit",
            "window",
            "sent",
            "last error",
        ],
        rows,
    )
