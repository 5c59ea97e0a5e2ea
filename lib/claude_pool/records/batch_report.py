"""What a batch did, for people: per account, fail-overs, errors, breaker changes and quota alerts
raised while it ran, as a summary (plain values) and as markdown."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from claude_pool.pool.directory import AccountDirectory
from claude_pool.records.names import account_names
from claude_pool.runtime import Runtime
from claude_pool.storage import BreakerTransition, Database, QuotaAlert

__all__ = ["batch_summary", "summary_headline", "summary_markdown"]

Outcome = Mapping[str, Any]  # an ExecutionView.as_dict(): what a batch chunk returns


async def batch_summary(
    runtime: Runtime, outcomes: Sequence[Outcome], since: datetime, elapsed_s: float
) -> dict[str, Any]:
    """The summary of ``outcomes``, with what changed in the pool ``since`` the batch began."""
    names = await account_names(AccountDirectory(runtime.db, runtime.config))
    transitions, alerts = await asyncio.to_thread(_changes_since, runtime.db, since)
    succeeded = [o for o in outcomes if o["status"] == "succeeded"]
    errors = Counter(o["error_type"] or "Error" for o in outcomes if o["status"] != "succeeded")
    return {
        "requests": len(outcomes),
        "succeeded": len(succeeded),
        "failed": len(outcomes) - len(succeeded),
        "elapsed_s": round(elapsed_s, 3),
        "requests_per_s": round(len(outcomes) / elapsed_s, 1) if elapsed_s > 0 else None,
        "per_account": _per_account(succeeded, names),
        "failovers": sum(o["failovers"] for o in succeeded),
        "errors": dict(errors),
        "failed_executions": _failed(outcomes),
        "breaker_transitions": [
            {
                "account": names.get(t.account_id, t.account_id),
                "from": t.from_state,
                "to": t.to_state,
                "reason": t.reason,
            }
            for t in transitions
        ],
        "alerts": [
            {
                "account": names.get(a.account_id, a.account_id),
                "metric": a.metric,
                "threshold": a.threshold,
                "kind": a.kind,
                "sent": a.sent_at is not None,
            }
            for a in alerts
        ],
    }


#: The failed requests a summary names one by one; the rest are counted in ``errors``.
FAILED_LISTED = 50


def _failed(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """Each failed request (up to :data:`FAILED_LISTED`), with the execution that says why."""
    return [
        {
            "execution_id": o["execution_id"],
            "idempotency_key": o.get("idempotency_key"),
            "error_type": o["error_type"],
            "error": " ".join(line.strip() for line in (o.get("error_message") or "").splitlines())[:300],
        }
        for o in outcomes
        if o["status"] != "succeeded"
    ][:FAILED_LISTED]


def _per_account(succeeded: Sequence[Outcome], names: Mapping[str, str]) -> dict[str, dict[str, int]]:
    per_account: dict[str, dict[str, int]] = defaultdict(
        lambda: {"requests": 0, "input_tokens": 0, "output_tokens": 0}
    )
    for o in succeeded:
        row = per_account[names.get(o["account_id"], o["account_id"] or "?")]
        row["requests"] += 1
        row["input_tokens"] += o["input_tokens"]
        row["output_tokens"] += o["output_tokens"]
    return dict(sorted(per_account.items()))


def _changes_since(db: Database, since: datetime) -> tuple[list[BreakerTransition], list[QuotaAlert]]:
    with db.session() as session:
        transitions = session.exec(
            select(BreakerTransition)
            .where(col(BreakerTransition.created_at) >= since)
            .order_by(col(BreakerTransition.created_at))
        )
        alerts = session.exec(
            select(QuotaAlert).where(col(QuotaAlert.created_at) >= since).order_by(col(QuotaAlert.created_at))
        )
        return list(transitions), list(alerts)


def summary_headline(summary: Mapping[str, Any]) -> str:
    """One line for the activity channel."""
    return (
        f"delegate-batch: {summary['succeeded']}/{summary['requests']} succeeded in {summary['elapsed_s']} s"
        f" ({summary['requests_per_s']} req/s)"
    )


def summary_markdown(summary: Mapping[str, Any]) -> str:
    lines = [
        f"# {summary_headline(summary)}",
        "",
        "| account | requests | input tokens | output tokens |",
        "|---|---:|---:|---:|",
    ]
    for name, row in summary["per_account"].items():
        lines.append(f"| {name} | {row['requests']} | {row['input_tokens']} | {row['output_tokens']} |")
    lines += ["", f"Fail-overs: {summary['failovers']}", f"Errors: {summary['errors'] or 'none'}", ""]
    lines += _failed_lines(summary.get("failed_executions") or [], int(summary["failed"]))
    lines.append(f"Breaker transitions: {len(summary['breaker_transitions'])}")
    lines += [
        f"- {t['account']}: {t['from']} → {t['to']} ({t['reason']})" for t in summary["breaker_transitions"]
    ]
    lines.append(f"Quota alerts raised: {len(summary['alerts'])}")
    lines += [
        f"- {a['account']}: {a['metric']} ≥ {a['threshold']:.0%} ({a['kind']})" for a in summary["alerts"]
    ]
    return "\n".join(lines)


def _failed_lines(failed: Sequence[Mapping[str, Any]], count: int) -> list[str]:
    if not failed:
        return []
    lines = ["## Failed requests", "", "| request | error | details |", "|---|---|---|"]
    for f in failed:
        error = f"{f['error_type'] or 'Error'}: {f['error']}".replace("|", "\\|")
        where = f"`claude-pool executions show {f['execution_id']}`" if f["execution_id"] else "not recorded"
        lines.append(f"| {f['idempotency_key'] or '-'} | {error} | {where} |")
    if count > len(failed):
        lines.append(f"... and {count - len(failed)} more: `claude-pool executions list --flow-run <this run's id>`")
    return [*lines, ""]
