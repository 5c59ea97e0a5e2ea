"""Which accounts may serve, as the pool sees them: read from the database, cached briefly.

Selection runs on every request; reading ``claude_accounts`` each time would put the database in
the hot path. The cache is short (a status change made elsewhere reaches every worker within
``ttl``), and this process's own changes invalidate it at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sqlmodel import col, select

from claude_pool.accounts.registry import effective_limits
from claude_pool.capacity import BucketLimits, Candidate
from claude_pool.core.config import PoolConfig
from claude_pool.storage import AccountStatus, ClaudeAccount, Database, utcnow

__all__ = ["AccountDirectory", "PoolAccount"]


@dataclass(frozen=True)
class PoolAccount:
    """An account as selection needs it: no key, only where it lives and its limits."""

    id: str
    name: str
    organization_id: str
    status: str
    status_until: float | None
    candidate: Candidate
    # Sealed, as stored: opened only at the moment of a call.
    api_key_encrypted: str = field(repr=False, default="")


def bucket_id_for(account: ClaudeAccount) -> str:
    # Keys of one Anthropic organization share that organization's limits: one bucket.
    return f"group:{account.capacity_group}" if account.capacity_group else f"account:{account.id}"


class AccountDirectory:
    def __init__(self, db: Database, config: PoolConfig, *, ttl: float = 2.0) -> None:
        self.db = db
        self.config = config
        self.ttl = ttl
        self._accounts: list[PoolAccount] = []
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def all(self) -> list[PoolAccount]:
        if time.monotonic() - self._loaded_at < self.ttl:
            return self._accounts
        async with self._lock:
            if time.monotonic() - self._loaded_at >= self.ttl:
                self._accounts = await asyncio.to_thread(self._load)
                self._loaded_at = time.monotonic()
        return self._accounts

    def _load(self) -> list[PoolAccount]:
        with self.db.session() as session:
            rows = list(session.exec(select(ClaudeAccount).order_by(col(ClaudeAccount.created_at))))
        now = utcnow()
        accounts = []
        for row in rows:
            limits = effective_limits(row, self.config)
            status = row.status
            # A spent account comes back on its own when its cap resets (1st of the month, UTC).
            if (
                status == AccountStatus.SPEND_EXHAUSTED
                and row.status_until is not None
                and row.status_until <= now
            ):
                status = AccountStatus.ACTIVE
            accounts.append(
                PoolAccount(
                    id=row.id,
                    name=row.name,
                    organization_id=row.organization_id,
                    status=status,
                    status_until=row.status_until.timestamp() if row.status_until else None,
                    candidate=Candidate(
                        account_id=row.id,
                        bucket_id=bucket_id_for(row),
                        limits=BucketLimits(
                            rpm=limits.requests_per_minute,
                            itpm=limits.input_tokens_per_minute,
                            otpm=limits.output_tokens_per_minute,
                            max_in_flight=limits.max_in_flight,
                        ),
                        priority=row.priority,
                        weight=row.weight,
                    ),
                    api_key_encrypted=row.api_key_encrypted,
                )
            )
        return accounts
