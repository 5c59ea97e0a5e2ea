"""Quota sweep steps: observe usage, raise alerts exactly once, send what is unsent."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from claude_pool.events.bus import open_event_bus
from claude_pool.quota import (
    AlertOutbox,
    QuotaEvaluator,
    QuotaObservation,
    budget_observations,
    observations_from_views,
)
from claude_pool.quota.account_alerts import AccountAlerts
from claude_pool.quota.slack import SlackNotifier
from claude_pool_tasks.context import open_pool, retry_on_infrastructure, runtime
from claude_pool_tasks.prefect_events import emit_quota_alerts

__all__ = [
    "evaluate_quotas",
    "observe_budgets",
    "observe_per_minute_usage",
    "reconcile_account_alerts",
    "send_unsent_alerts",
]


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
async def observe_per_minute_usage() -> list[dict[str, Any]]:
    """Requests and tokens used this minute, per account, from the live capacity view."""
    async with open_pool(events=False) as pool:
        accounts = await pool.directory.all()
        views = await pool.capacity.view([a.candidate for a in accounts]) if accounts else []
    return [asdict(o) for o in observations_from_views(views, accounts)]


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
def observe_budgets() -> list[dict[str, Any]]:
    """Daily and monthly token budgets, from the recorded executions."""
    rt = runtime()
    return [asdict(o) for o in budget_observations(rt.db, rt.config)]


@task(
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=retry_on_infrastructure,
    cache_policy=NO_CACHE,
)
async def evaluate_quotas(observations: list[dict[str, Any]]) -> int:
    """Each (account, metric, threshold, window) becomes one row, however many sweeps see it."""
    rt = runtime()
    bus = open_event_bus(rt.settings)
    seen = [QuotaObservation(**o) for o in observations]
    try:
        alerts = await QuotaEvaluator(rt.db, rt.config, bus=bus).aevaluate(seen)
    finally:
        await bus.aclose()
    emit_quota_alerts(alerts, {o.account_id: o.account_name for o in seen})  # as Prefect events
    return len(alerts)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
def reconcile_account_alerts() -> int:
    """Account alerts from the accounts' stored status, whoever changed it: disabled, enabled again,
    a rotated key, a spend cap that reset. Idempotent: an open incident is not raised twice."""
    return len(AccountAlerts(runtime().db).reconcile())


@task(
    retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE
)
async def send_unsent_alerts() -> dict[str, Any]:
    """Send every unsent alert to Slack; what cannot be sent now stays for the next sweep."""
    rt = runtime()
    notifier = SlackNotifier(rt.settings)
    try:
        report = await AlertOutbox(rt.db, notifier).send_unsent()
    finally:
        await notifier.aclose()
    return asdict(report)
