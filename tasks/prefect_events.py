"""What an operator automates on, as Prefect events: the library's listener callbacks bridged to
``prefect.events.emit_event`` (the library itself knows nothing of Prefect).

Every event is named under ``claude-pool.account.`` and names the account as its resource and as a
related resource (role ``account``); Prefect adds the flow run, flow and deployment it was emitted
in. An automation matches on the name, e.g. ``claude-pool.account.breaker-opened``; capacity sync
emits ``claude-pool.account.usage-drift`` when another client spends from a pooled key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect.events import emit_event

from claude_pool.breaker import BreakerListener, State, Transition
from claude_pool.core.redaction import redact
from claude_pool.maintenance.usage_drift import DriftCheck
from claude_pool.pool.directory import AccountDirectory
from claude_pool.pool.listeners import AccountStatusChange, PoolListener
from claude_pool.records.names import account_name
from claude_pool.storage import AccountStatus, QuotaAlert

__all__ = [
    "EVENT_PREFIX",
    "PrefectEventBridge",
    "emit_account_event",
    "emit_quota_alerts",
    "emit_usage_drift",
]

EVENT_PREFIX = "claude-pool.account."
_BREAKER_EVENTS = {State.OPEN: "breaker-opened", State.CLOSED: "breaker-closed", State.HALF_OPEN: "breaker-half-open"}
_STATUS_EVENTS = {
    AccountStatus.INVALID_CREDENTIALS: "credentials-rejected",
    AccountStatus.SPEND_EXHAUSTED: "budget-exhausted",
}
#: Quota metrics that are budgets: reaching all of one is an exhausted budget, not only an alert.
BUDGETS = ("daily_token_budget", "monthly_token_budget", "monthly_spend_budget_usd")


def emit_account_event(
    what: str, account_id: str, account_name: str | None, payload: Mapping[str, Any] | None = None
) -> None:
    """``claude-pool.account.<what>`` about one account (plain, redacted values only)."""
    account = {"prefect.resource.id": f"claude-pool.account.{account_id}"}
    if account_name:
        account["prefect.resource.name"] = account_name
    emit_event(
        event=EVENT_PREFIX + what,
        resource=account,
        related=[{**account, "prefect.resource.role": "account"}],
        payload={k: redact(v) if isinstance(v, str) else v for k, v in (payload or {}).items()},
    )


def emit_quota_alerts(alerts: list[QuotaAlert], names: Mapping[str, str]) -> None:
    """One ``quota-alert-raised`` per new alert, and ``budget-exhausted`` for a budget used up."""
    for alert in alerts:
        payload = {
            "metric": alert.metric, "threshold": alert.threshold, "kind": alert.kind,
            "window": alert.window, "observed": alert.observed, "limit": alert.limit,
            "organization_id": alert.organization_id,
        }
        emit_account_event("quota-alert-raised", alert.account_id, names.get(alert.account_id), payload)
        if alert.metric in BUDGETS and alert.kind == "threshold" and alert.threshold >= 1.0:
            emit_account_event("budget-exhausted", alert.account_id, names.get(alert.account_id), payload)


def emit_usage_drift(check: DriftCheck) -> None:
    """``usage-drift`` for each key another client started spending from (one per incident, as its
    alert), ``usage-drift-ended`` when upstream's count agrees with the pool's again."""
    window = {"window_start": check.window_start.isoformat(), "window_end": check.window_end.isoformat()}
    for what, comparisons in (("usage-drift", check.raised), ("usage-drift-ended", check.ended)):
        for c in comparisons:
            payload = {
                "organization_id": c.organization_id, "api_key_id": c.api_key_id,
                "upstream_tokens": c.upstream.total, "pool_tokens": c.pool.total,
                "excess_tokens": c.excess, "tolerance_tokens": c.tolerance, **window,
            }
            emit_account_event(what, c.account_id, c.account_name, payload)


class PrefectEventBridge(PoolListener, BreakerListener):
    """A pool and breaker listener turning transitions and set-aside accounts into Prefect events."""

    def __init__(self, directory: AccountDirectory | None = None) -> None:
        self.directory = directory

    async def on_transition(self, transition: Transition) -> None:
        what = _BREAKER_EVENTS.get(transition.to_state)
        if what is None:
            return
        payload = {
            "from": transition.from_state.value, "to": transition.to_state.value,
            "reason": transition.reason, "consecutive_failures": transition.consecutive_failures,
            "open_until": transition.open_until_datetime.isoformat() if transition.open_until_datetime else None,
        }
        name = await account_name(self.directory, transition.account_id) if self.directory else None
        emit_account_event(what, transition.account_id, name, payload)

    async def on_account_status(self, change: AccountStatusChange) -> None:
        what = _STATUS_EVENTS.get(change.status)
        if what is None:
            return
        payload = {
            "status": change.status, "reason": change.reason, "organization_id": change.organization_id,
            "until": change.until.isoformat() if change.until else None,
        }
        emit_account_event(what, change.account_id, change.account_name, payload)
