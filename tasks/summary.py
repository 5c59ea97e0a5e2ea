"""What a batch did, for people: per account, fail-overs, errors, breaker changes, alerts."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlmodel import col, select

from claude_pool.core.errors import NotificationError
from claude_pool.quota.slack import SlackNotifier
from claude_pool.storage import BreakerTransition, ClaudeAccount, QuotaAlert
from claude_pool_tasks.context import runtime

__all__ = ["summarize_batch", "summary_markdown"]

logger = logging.getLogger("claude_pool.batch")


def _since(model: Any, since: datetime) -> list[Any]:
    with runtime().db.session() as session:
        return list(
            session.exec(select(model).where(col(model.created_at) >= since).order_by(col(model.created_at)))
        )


def build_summary(outcomes: list[dict[str, Any]], since: datetime, elapsed_s: float) -> dict[str, Any]:
    with runtime().db.session() as session:
        names = {a.id: a.name for a in session.exec(select(ClaudeAccount))}
    per_account: dict[str, dict[str, int]] = defaultdict(
        lambda: {"requests": 0, "input_tokens": 0, "output_tokens": 0}
    )
    errors: Counter[str] = Counter()
    failovers = 0
    for o in outcomes:
        if o["status"] == "succeeded":
            row = per_account[names.get(o["account_id"], o["account_id"] or "?")]
            row["requests"] += 1
            row["input_tokens"] += o["input_tokens"]
            row["output_tokens"] += o["output_tokens"]
            failovers += o["failovers"]
        else:
            errors[o["error_type"] or "Error"] += 1
    transitions = [
        {
            "account": names.get(t.account_id, t.account_id),
            "from": t.from_state,
            "to": t.to_state,
            "reason": t.reason,
        }
        for t in _since(BreakerTransition, since)
    ]
    alerts = [
        {
            "account": names.get(a.account_id, a.account_id),
            "metric": a.metric,
            "threshold": a.threshold,
            "kind": a.kind,
            "sent": a.sent_at is not None,
        }
        for a in _since(QuotaAlert, since)
    ]
    succeeded = sum(1 for o in outcomes if o["status"] == "succeeded")
    return {
        "requests": len(outcomes),
        "succeeded": succeeded,
        "failed": len(outcomes) - succeeded,
        "elapsed_s": round(elapsed_s, 3),
        "requests_per_s": round(len(outcomes) / elapsed_s, 1) if elapsed_s > 0 else None,
        "per_account": dict(sorted(per_account.items())),
        "failovers": failovers,
        "errors": dict(errors),
        "breaker_transitions": transitions,
        "alerts": alerts,
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# delegate-batch: {summary['succeeded']}/{summary['requests']} succeeded in {summary['elapsed_s']} s"
        f" ({summary['requests_per_s']} req/s)",
        "",
        "| account | requests | input tokens | output tokens |",
        "|---|---:|---:|---:|",
    ]
    for name, row in summary["per_account"].items():
        lines.append(f"| {name} | {row['requests']} | {row['input_tokens']} | {row['output_tokens']} |")
    lines += ["", f"Fail-overs: {summary['failovers']}", f"Errors: {summary['errors'] or 'none'}", ""]
    lines.append(f"Breaker transitions: {len(summary['breaker_transitions'])}")
    lines += [
        f"- {t['account']}: {t['from']} → {t['to']} ({t['reason']})" for t in summary["breaker_transitions"]
    ]
    lines.append(f"Quota alerts raised: {len(summary['alerts'])}")
    lines += [
        f"- {a['account']}: {a['metric']} ≥ {a['threshold']:.0%} ({a['kind']})" for a in summary["alerts"]
    ]
    return "\n".join(lines)


@task(cache_policy=NO_CACHE)
async def summarize_batch(
    outcomes: list[dict[str, Any]], since: datetime, elapsed_s: float
) -> dict[str, Any]:
    """The summary artifact, and one activity note for the whole batch (not one per request)."""
    summary = build_summary(outcomes, since, elapsed_s)
    markdown = summary_markdown(summary)
    await acreate_markdown_artifact(markdown, key="delegate-batch-summary", description="what the batch did")
    notifier = SlackNotifier(runtime().settings)
    try:
        await notifier.post_activity(markdown.splitlines()[0].lstrip("# "), max_wait=5.0)
    except NotificationError as exc:
        logger.warning("batch activity note not sent: %s", exc)
    finally:
        await notifier.aclose()
    return summary
