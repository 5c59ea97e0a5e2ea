"""What the pool tells the rest of the system. Each sink (logs, events, Slack, the database) is
just a listener; every method has a no-op default, so a listener implements only what it needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from claude_pool.pool.models import AttemptRecord, DelegationRequest, DelegationResult

__all__ = ["AccountStatusChange", "PoolListener", "Selected"]


@dataclass(frozen=True)
class Selected:
    account_id: str
    account_name: str
    organization_id: str
    strategy: str
    attempt: int
    probe: bool
    #: How long the request waited for its place in the account's queue before this call could go
    #: out (0: served at once); see ``Reservation.wait_seconds``.
    wait_seconds: float = 0.0


@dataclass(frozen=True)
class AccountStatusChange:
    account_id: str
    account_name: str
    organization_id: str
    status: str
    reason: str
    until: datetime | None


class PoolListener:
    async def on_selection(self, request: DelegationRequest, selected: Selected) -> None:
        """An account was chosen and its capacity reserved."""

    async def on_attempt(self, request: DelegationRequest, attempt: AttemptRecord) -> None:
        """One call to Anthropic ended (successfully or not)."""

    async def on_account_status(self, change: AccountStatusChange) -> None:
        """An account was set aside (bad credentials, spend exhausted)."""

    async def on_result(self, request: DelegationRequest, result: DelegationResult) -> None:
        """A delegation succeeded."""

    async def on_failure(self, request: DelegationRequest, error: BaseException) -> None:
        """A delegation failed for good."""
