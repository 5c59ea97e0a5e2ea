"""Every breaker transition stored in ``breaker_transitions`` (history for the UI and alerts)."""

from __future__ import annotations

import asyncio

from claude_pool.breaker import BreakerListener, Transition
from claude_pool.storage import BreakerTransition, Database

__all__ = ["BreakerHistoryListener"]


class BreakerHistoryListener(BreakerListener):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def on_transition(self, transition: Transition) -> None:
        await asyncio.to_thread(self._store, transition)

    def _store(self, t: Transition) -> None:
        with self.db.session() as session:
            session.add(
                BreakerTransition(
                    account_id=t.account_id,
                    from_state=t.from_state.value,
                    to_state=t.to_state.value,
                    reason=t.reason[:500],
                    consecutive_failures=t.consecutive_failures,
                    open_until=t.open_until_datetime,
                    created_at=t.at_datetime,
                )
            )
