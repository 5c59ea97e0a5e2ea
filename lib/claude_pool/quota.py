"""Quota alerts (DESIGN.md 4.5), in one import: the rules (``quota_rules``), the outbox that sends
them to Slack (``alert_outbox``), and reading the table back (``list_alerts``).

A quota sweep is four separate steps, so a Prefect flow can make each a retried task::

    views = await capacity.view([a.candidate for a in accounts])
    observations = observations_from_views(views, accounts)      # pure
    observations += budget_observations(db, config)               # reads orchestrator_executions
    alerts = await QuotaEvaluator(db, config, bus=bus).aevaluate(observations)
    report = await AlertOutbox(db, SlackNotifier(settings)).send_unsent()
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from claude_pool.alert_outbox import AlertOutbox, SendReport
from claude_pool.quota_rules import (
    BUDGET_METRICS,
    KIND_RECOVERY,
    KIND_THRESHOLD,
    PER_MINUTE_METRICS,
    QuotaEvaluator,
    QuotaObservation,
    alert_event,
    budget_observations,
    budget_usage,
    observations_from_views,
    previous_window,
    window_bounds,
    window_for,
)
from claude_pool.storage import ClaudeAccount, Database, QuotaAlert

__all__ = [
    "BUDGET_METRICS",
    "KIND_RECOVERY",
    "KIND_THRESHOLD",
    "PER_MINUTE_METRICS",
    "AlertOutbox",
    "AlertRecord",
    "QuotaEvaluator",
    "QuotaObservation",
    "SendReport",
    "alert_event",
    "budget_observations",
    "budget_usage",
    "list_alerts",
    "observations_from_views",
    "previous_window",
    "window_bounds",
    "window_for",
]


@dataclass(frozen=True)
class AlertRecord:
    """A stored alert with the name of its account (``None`` once the account is deleted)."""

    alert: QuotaAlert
    account_name: str | None


def list_alerts(
    db: Database, *, organization_id: str | None = None, unsent: bool = False, limit: int = 200
) -> list[AlertRecord]:
    """Newest first."""
    qa = QuotaAlert.__table__  # type: ignore[attr-defined]
    ca = ClaudeAccount.__table__  # type: ignore[attr-defined]
    query = sa.select(qa, ca.c.name).select_from(qa.outerjoin(ca, ca.c.id == qa.c.account_id))
    if organization_id is not None:
        query = query.where(qa.c.organization_id == organization_id)
    if unsent:
        query = query.where(qa.c.sent_at.is_(None))
    query = query.order_by(qa.c.created_at.desc(), qa.c.id.desc()).limit(limit)
    with db.session() as session:
        rows = [dict(r._mapping) for r in session.execute(query)]
    return [
        AlertRecord(alert=QuotaAlert(**{k: v for k, v in r.items() if k != "name"}), account_name=r["name"])
        for r in rows
    ]
