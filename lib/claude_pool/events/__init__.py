"""Events for dashboards and automations: the bus (in-process or a Redis stream) and the
publisher that turns what the pool and the breakers report into events on it.

May import ``core``, ``breaker`` and ``pool``.
"""

from __future__ import annotations

from claude_pool.events.bus import (
    Event,
    EventBus,
    InProcessEventBus,
    RedisEventBus,
    SubscriberDropped,
    open_event_bus,
)
from claude_pool.events.execution_scope import current_execution_id, execution_scope
from claude_pool.events.publisher import EventPublisher, open_publishing_pool

__all__ = [
    "Event",
    "EventBus",
    "EventPublisher",
    "InProcessEventBus",
    "RedisEventBus",
    "SubscriberDropped",
    "current_execution_id",
    "execution_scope",
    "open_event_bus",
    "open_publishing_pool",
]
