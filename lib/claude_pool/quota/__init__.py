"""Quota alerts (DESIGN.md 4.5): the rules (``rules``), the outbox that sends them to Slack
(``outbox``, through ``slack``), and reading the table back (``listing``). Account alerts (breaker
opened, credentials rejected, budget exhausted, account disabled, and their recoveries) are stored
by ``account_alerts`` (fed by the pool and breaker listener in ``account_listener``) and sent by the
same outbox, worded by ``account_messages``.

May import every layer below it (``core`` to ``events``).

A quota sweep is four separate steps, so a Prefect flow can make each a retried task::

    views = await capacity.view([a.candidate for a in accounts])
    observations = observations_from_views(views, accounts)      # pure
    observations += budget_observations(db, config)               # reads orchestrator_executions
    alerts = await QuotaEvaluator(db, config, bus=bus).aevaluate(observations)
    report = await AlertOutbox(db, SlackNotifier(settings)).send_unsent()
"""

from __future__ import annotations

from claude_pool.quota.account_alerts import AccountAlerts
from claude_pool.quota.account_listener import AccountAlertListener
from claude_pool.quota.listing import AlertRecord, list_alerts
from claude_pool.quota.outbox import AlertOutbox, SendReport
from claude_pool.quota.rules import (
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

__all__ = [
    "BUDGET_METRICS",
    "KIND_RECOVERY",
    "KIND_THRESHOLD",
    "PER_MINUTE_METRICS",
    "AccountAlertListener",
    "AccountAlerts",
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
