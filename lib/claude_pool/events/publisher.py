"""Turns what the pool and the breakers report into events on the bus (and so on the SSE stream).

Payloads are snake_case inside the process and on the Redis stream, like every other Python value;
the HTTP event stream shows them in camelCase (``claude_pool.http.events_sse``). Every event about
an execution (selection, success, failure) names it: ``execution_id``, read from the
:func:`~claude_pool.events.execution_scope.execution_scope` the front end delegates in (``None``
for a delegation nobody records).
"""

from __future__ import annotations

from collections.abc import Sequence

from claude_pool.breaker import BreakerListener, Transition
from claude_pool.events.bus import Event, EventBus
from claude_pool.events.execution_scope import current_execution_id
from claude_pool.pool import Pool
from claude_pool.pool.directory import AccountDirectory
from claude_pool.pool.listeners import AccountStatusChange, PoolListener, Selected
from claude_pool.pool.models import DelegationRequest, DelegationResult
from claude_pool.runtime import Runtime

__all__ = ["EventPublisher", "open_publishing_pool"]


def open_publishing_pool(
    runtime: Runtime,
    bus: EventBus | None,
    *,
    listeners: Sequence[PoolListener] = (),
    breaker_listeners: Sequence[BreakerListener] = (),
) -> Pool:
    """A pool whose selections, results, breaker transitions and account changes are published on
    ``bus`` (a plain pool when there is none), told to ``listeners`` and ``breaker_listeners`` as
    well (account alerts, metrics). The caller closes the pool, then the bus."""
    if bus is None:
        return Pool.open(runtime, listeners=listeners, breaker_listeners=breaker_listeners)
    publisher = EventPublisher(bus)
    pool = Pool.open(
        runtime, listeners=[publisher, *listeners], breaker_listeners=[publisher, *breaker_listeners]
    )
    # The publisher names the organization of a breaker transition from the pool's directory.
    publisher.directory = pool.directory
    return pool


class EventPublisher(PoolListener, BreakerListener):
    def __init__(self, bus: EventBus, directory: AccountDirectory | None = None) -> None:
        self.bus = bus
        self.directory = directory

    async def on_selection(self, request: DelegationRequest, selected: Selected) -> None:
        await self.bus.publish(
            Event(
                "account.selected",
                request.organization_id,
                {
                    "execution_id": current_execution_id(),
                    "account_id": selected.account_id,
                    "account_name": selected.account_name,
                    "strategy": selected.strategy,
                    "attempt": selected.attempt,
                    "probe": selected.probe,
                    "user_id": request.user_id,
                },
            )
        )

    async def on_result(self, request: DelegationRequest, result: DelegationResult) -> None:
        await self.bus.publish(
            Event(
                "execution.succeeded",
                request.organization_id,
                {
                    "execution_id": current_execution_id(),
                    "account_id": result.account_id,
                    "account_name": result.account_name,
                    "attempts": len(result.attempts),
                    "input_tokens": result.usage.input_tokens,
                    "output_tokens": result.usage.output_tokens,
                    "latency_ms": round(result.latency_ms, 1),
                    "user_id": request.user_id,
                    "idempotency_key": request.idempotency_key,
                },
            )
        )

    async def on_failure(self, request: DelegationRequest, error: BaseException) -> None:
        await self.bus.publish(
            Event(
                "execution.failed",
                request.organization_id,
                {
                    "execution_id": current_execution_id(),
                    "error_type": type(error).__name__,
                    "error": str(error)[:1000],
                    "user_id": request.user_id,
                },
            )
        )

    async def on_account_status(self, change: AccountStatusChange) -> None:
        await self.bus.publish(
            Event(
                "account.status",
                change.organization_id,
                {
                    "account_id": change.account_id,
                    "account_name": change.account_name,
                    "status": change.status,
                    "reason": change.reason[:500],
                    "until": change.until.isoformat() if change.until else None,
                },
            )
        )

    async def on_transition(self, transition: Transition) -> None:
        organization_id = None
        if self.directory is not None:
            for account in await self.directory.all():
                if account.id == transition.account_id:
                    organization_id = account.organization_id
        await self.bus.publish(
            Event(
                "breaker.transition",
                organization_id,
                {
                    "account_id": transition.account_id,
                    "from": transition.from_state.value,
                    "to": transition.to_state.value,
                    "reason": transition.reason,
                    "consecutive_failures": transition.consecutive_failures,
                    "open_until": transition.open_until,
                },
            )
        )
