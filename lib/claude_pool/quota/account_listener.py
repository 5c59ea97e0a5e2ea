"""Hears the pool and the breakers, and stores account alerts for the outbox to send.

One listener for both: it is a pool listener (an account set aside: credentials rejected, budget
exhausted; each call's failure, so that a breaker alert can name the failures that opened it) and a
breaker listener (opened, closed again). It only writes rows: Slack is the outbox's business, so a
slow or absent Slack never holds up the call that tripped a breaker.

    alerts = AccountAlertListener(runtime.db)
    Pool.open(runtime, listeners=[alerts], breaker_listeners=[alerts])
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque

from claude_pool.breaker import BreakerListener, State, Transition
from claude_pool.pool.listeners import AccountStatusChange, PoolListener
from claude_pool.pool.models import AttemptRecord, DelegationRequest
from claude_pool.quota.account_alerts import KIND_BREAKER_OPEN, STATUS_KINDS, AccountAlerts
from claude_pool.storage import Database

__all__ = ["AccountAlertListener"]

_FAILURES_KEPT = 5


def _describe(attempt: AttemptRecord) -> str:
    status = f"HTTP {attempt.status_code} " if attempt.status_code else ""
    return f"{status}{attempt.error_type or attempt.outcome}"


def _latest(failures: deque[str]) -> str:
    """'HTTP 503 api_error x2, timeout' (in order of first appearance)."""
    counts = Counter(failures)
    return "latest: " + ", ".join(f"{f} x{n}" if n > 1 else f for f, n in counts.items())


def _why_opened(transition: Transition) -> str:
    n = transition.consecutive_failures
    if n and not transition.reason.startswith(str(n)):
        return f"{n} consecutive failures ({transition.reason})"
    return transition.reason


class AccountAlertListener(PoolListener, BreakerListener):
    def __init__(self, db: Database, *, alerts: AccountAlerts | None = None) -> None:
        self.alerts = alerts or AccountAlerts(db)
        # The latest failed calls per account seen by this worker, named in a breaker alert.
        self._failures: dict[str, deque[str]] = {}
        # Breaker alerts stored before the call that tripped the breaker was reported to us.
        self._awaiting_failure: dict[str, tuple[int, str]] = {}

    # -- pool -----------------------------------------------------------------------------------

    async def on_attempt(self, request: DelegationRequest, attempt: AttemptRecord) -> None:
        if attempt.outcome == "success":
            self._failures.pop(attempt.account_id, None)
            return
        failures = self._failures.setdefault(attempt.account_id, deque(maxlen=_FAILURES_KEPT))
        failures.append(_describe(attempt))
        awaiting = self._awaiting_failure.pop(attempt.account_id, None)
        if awaiting is not None:
            # The breaker opens inside the call that tripped it, before that call is reported.
            alert_id, opened = awaiting
            await asyncio.to_thread(self.alerts.amend, alert_id, f"{opened}; {_latest(failures)}")

    async def on_account_status(self, change: AccountStatusChange) -> None:
        kind = STATUS_KINDS.get(change.status)
        if kind is not None:
            await asyncio.to_thread(
                self.alerts.incident, change.account_id, kind, change.reason, until=change.until
            )

    # -- breaker --------------------------------------------------------------------------------

    async def on_transition(self, transition: Transition) -> None:
        account_id = transition.account_id
        if transition.to_state is State.OPEN and transition.from_state is State.CLOSED:
            opened = _why_opened(transition)
            failures = self._failures.get(account_id)
            detail = f"{opened}; {_latest(failures)}" if failures else opened
            row = await asyncio.to_thread(
                self.alerts.incident,
                account_id,
                KIND_BREAKER_OPEN,
                detail,
                until=transition.open_until_datetime,
            )
            if row is not None and row.id is not None:
                self._awaiting_failure[account_id] = (row.id, opened)
        elif transition.to_state is State.CLOSED:
            self._awaiting_failure.pop(account_id, None)
            self._failures.pop(account_id, None)
            await asyncio.to_thread(
                self.alerts.recovery, account_id, KIND_BREAKER_OPEN, f"closed: {transition.reason}"
            )
