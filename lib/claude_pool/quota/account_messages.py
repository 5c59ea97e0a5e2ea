"""Account alerts as Slack messages: a plain-text fallback and Block Kit, within Slack's limits
(the builders of :mod:`claude_pool.quota.slack` clip and redact every piece of text)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from claude_pool.core.redaction import redact
from claude_pool.quota.account_alerts import (
    KIND_BREAKER_OPEN,
    KIND_BUDGET_EXHAUSTED,
    KIND_CREDENTIALS_REJECTED,
    KIND_DISABLED,
    KIND_USAGE_DRIFT,
    PHASE_DIGEST,
    PHASE_RECOVERY,
)
from claude_pool.quota.slack import _header, _mrkdwn, _section
from claude_pool.storage import AccountAlert

__all__ = ["account_alert_blocks", "account_alert_text"]

# kind -> (incident icon and title, recovery title, what the incident means for the pool)
_WORDING = {
    KIND_BREAKER_OPEN: (
        "🔌 Circuit breaker opened",
        "✅ Circuit breaker closed",
        "gets no requests until its breaker lets a probe through",
    ),
    KIND_CREDENTIALS_REJECTED: (
        "🔑 Credentials rejected",
        "✅ Credentials accepted again",
        "was set aside: Anthropic refused its API key (rotate it: `claude-pool accounts rotate-key`)",
    ),
    KIND_BUDGET_EXHAUSTED: (
        "💸 Budget exhausted",
        "✅ Budget available again",
        "was set aside: its spend limit is reached",
    ),
    KIND_DISABLED: ("⏸️ Account disabled", "▶️ Account re-enabled", "was taken out of the pool"),
    KIND_USAGE_DRIFT: (
        "🕵️ Usage drift",
        "✅ Usage matches again",
        "is spent by a client outside the pool: Anthropic counts clearly more tokens on its key "
        "than the pool sent (rotate the key if nobody else should hold it: "
        "`claude-pool accounts rotate-key`)",
    ),
}
_SUBJECT = {
    KIND_BREAKER_OPEN: "circuit breaker",
    KIND_CREDENTIALS_REJECTED: "credentials",
    KIND_BUDGET_EXHAUSTED: "budget",
    KIND_DISABLED: "disabled / enabled",
    KIND_USAGE_DRIFT: "usage drift",
}
_NOUN = {
    KIND_BREAKER_OPEN: ("opened", "closed"),
    KIND_CREDENTIALS_REJECTED: ("rejected", "accepted again"),
    KIND_BUDGET_EXHAUSTED: ("exhausted", "available again"),
    KIND_DISABLED: ("disabled", "re-enabled"),
    KIND_USAGE_DRIFT: ("drifted", "matched again"),
}
# What a recovery note says of the account: only a drift leaves it in the pool all along.
_RECOVERED = {KIND_USAGE_DRIFT: "is spent by the pool alone again"}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def _title(alert: AccountAlert, name: str) -> str:
    incident, recovery, _ = _WORDING[alert.kind]
    if alert.phase == PHASE_DIGEST:
        return f"🔁 Flapping: {name}, {_SUBJECT[alert.kind]}"
    return f"{recovery if alert.phase == PHASE_RECOVERY else incident}: {name}"


def _summary(alert: AccountAlert, name: str) -> str:
    _, _, meaning = _WORDING[alert.kind]
    opened, closed = _NOUN[alert.kind]
    who = f"*{_mrkdwn(name)}*"
    if alert.phase == PHASE_DIGEST:
        state = f" Open until {_when(alert.until)}." if alert.until else ""
        return (
            f"{who} {opened} {alert.openings} time(s) and {closed} {alert.recoveries} time(s) since "
            f"{_when(alert.created_at)}; one message instead of {alert.openings + alert.recoveries}.{state}"
        )
    if alert.phase == PHASE_RECOVERY:
        recovered = _RECOVERED.get(alert.kind, "is back in the pool")
        return f"{who} {recovered} ({closed}; incident #{alert.sequence})."
    until = f" Until {_when(alert.until)}." if alert.until else ""
    return f"{who} {_mrkdwn(meaning)}.{until}"


def account_alert_text(alert: AccountAlert, *, account_name: str | None = None) -> str:
    """The plain-text fallback (notifications, screen readers)."""
    name = account_name or alert.account_id
    detail = f" -- {alert.detail}" if alert.detail else ""
    summary = _summary(alert, name).replace("*", "")
    return redact(f"[claude-pool] {_title(alert, name)} ({alert.organization_id}): {summary}{detail}")


def account_alert_blocks(alert: AccountAlert, *, account_name: str | None = None) -> list[dict[str, Any]]:
    name = account_name or alert.account_id
    fields = [("Account", name), ("Organization", alert.organization_id)]
    if alert.detail:
        label = "Last change" if alert.phase == PHASE_DIGEST else "Why"
        fields.append((label, alert.detail))
    if alert.until is not None:
        fields.append(("Until", _when(alert.until)))
    fields.append(("Since" if alert.phase == PHASE_DIGEST else "At", _when(alert.created_at)))
    return [_header(_title(alert, name)), _section(_summary(alert, name), fields)]
