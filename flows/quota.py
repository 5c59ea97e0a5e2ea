"""``quota_sweep``: evaluate every threshold, raise each alert once, send what is unsent."""

from __future__ import annotations

from typing import Any

from prefect import flow

from claude_pool_tasks.quota import (
    evaluate_quotas,
    observe_budgets,
    observe_per_minute_usage,
    reconcile_account_alerts,
    send_unsent_alerts,
)

__all__ = ["quota_sweep"]


@flow(name="quota-sweep", timeout_seconds=300)
async def quota_sweep() -> dict[str, Any]:
    """Alerts at the configured thresholds (80/95/100 % by default) of every limit and budget, each
    raised once per window across any number of concurrent sweeps; unsent ones go to Slack, and
    an alert Slack could not take stays unsent for the next sweep: none is lost. Account alerts
    (breaker, credentials, budget, disabled) go out with them."""
    observations = await observe_per_minute_usage() + observe_budgets()
    raised = await evaluate_quotas(observations)
    account_alerts = reconcile_account_alerts()
    report = await send_unsent_alerts()
    return {
        "observations": len(observations),
        "alerts_raised": raised,
        "account_alerts_raised": account_alerts,
        **report,
    }
