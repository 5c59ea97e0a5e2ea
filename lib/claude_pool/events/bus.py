"""Events for dashboards and automations: account selection, execution results, breaker
transitions, account status changes and quota alerts.

Two buses with one interface: in-process (the embedded default: one process sees its own events)
and Redis, where every worker process publishes to one stream. A Redis *stream* rather than plain
pub/sub, so that a reconnecting client resumes from its ``Last-Event-ID`` instead of losing what
happened while it was away. A subscriber that cannot keep up is dropped, never allowed to block
the publisher or other subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Collection
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from claude_pool.core.backend_errors import redis_errors
from claude_pool.core.errors import ClaudePoolError
from claude_pool.core.redaction import redact
from claude_pool.core.redis_client import connect
from claude_pool.core.redis_keys import EVENTS_STREAM_MAXLEN, RedisKeys
from claude_pool.core.settings import Settings

__all__ = ["Event", "EventBus", "InProcessEventBus", "RedisEventBus", "SubscriberDropped", "open_event_bus"]


class SubscriberDropped(ClaudePoolError):
    """The subscriber fell too far behind and was cut off; it may reconnect with its last id."""


@dataclass(frozen=True)
class Event:
    type: str
    organization_id: str | None
    data: dict[str, Any]
    at: float = field(default_factory=time.time)
    id: str = ""

    def to_json(self) -> str:
        return redact(json.dumps(asdict(self), default=str, sort_keys=True))

    @classmethod
    def from_json(cls, text: str, *, id: str | None = None) -> Event:
        raw = json.loads(text)
        if id is not None:
            raw["id"] = id
        return cls(**raw)


def _visible(event: Event, organization_ids: Collection[str] | None) -> bool:
    # None = every organization (an admin token); an event without an organization is admin-only.
    return organization_ids is None or event.organization_id in organization_ids


class EventBus(ABC):
    @abstractmethod
    async def publish(self, event: Event) -> Event:
        """Publish; returns the event with its id."""

    @abstractmethod
    def subscribe(
        self, organization_ids: Collection[str] | None, *, last_event_id: str | None = None
    ) -> AsyncIterator[Event]:
        """Events of these organizations from now on (after ``last_event_id`` where still kept)."""

    async def aclose(self) -> None:
        return None


class InProcessEventBus(EventBus):
    def __init__(self, *, history: int = 1000, queue_size: int = 1000) -> None:
        self._history: deque[Event] = deque(maxlen=history)
        self._queues: set[asyncio.Queue[Event | None]] = set()
        self._queue_size = queue_size
        self._ids = itertools.count(1)

    async def publish(self, event: Event) -> Event:
        event = Event(event.type, event.organization_id, event.data, event.at, str(next(self._ids)))
        self._history.append(event)
        for queue in list(self._queues):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(queue)
        return event

    def _drop(self, queue: asyncio.Queue[Event | None]) -> None:
        self._queues.discard(queue)
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()  # make room for the end-of-stream marker
        queue.put_nowait(None)

    async def subscribe(
        self, organization_ids: Collection[str] | None, *, last_event_id: str | None = None
    ) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=self._queue_size)
        self._queues.add(queue)
        try:
            if last_event_id is not None and last_event_id.isdigit():
                for past in list(self._history):
                    if int(past.id) > int(last_event_id) and _visible(past, organization_ids):
                        yield past
            while True:
                event = await queue.get()
                if event is None:
                    raise SubscriberDropped("the subscriber fell behind and was dropped")
                if _visible(event, organization_ids):
                    yield event
        finally:
            self._queues.discard(queue)


# A stream entry as the bus's client reads it (decode_responses=True, RESP2): (entry id, fields).
# redis-py annotates stream replies for every protocol and decoding at once.
_StreamEntry = tuple[str, dict[str, str]]


class RedisEventBus(EventBus):
    def __init__(self, url: str, *, prefix: str, block_ms: int = 15_000) -> None:

        self._client = connect(url, decode_responses=True)
        self._stream = RedisKeys(prefix).events_stream()
        self._block_ms = block_ms

    async def publish(self, event: Event) -> Event:
        with redis_errors("events publish"):
            event_id = await self._client.xadd(
                self._stream, {"event": event.to_json()}, maxlen=EVENTS_STREAM_MAXLEN, approximate=True
            )
        return Event(event.type, event.organization_id, event.data, event.at, str(event_id))

    async def subscribe(
        self, organization_ids: Collection[str] | None, *, last_event_id: str | None = None
    ) -> AsyncIterator[Event]:
        with redis_errors("events read"):
            if last_event_id:
                cursor = last_event_id
            else:
                # Start after the newest entry now; "$" would skip what arrives between two reads.
                newest = cast("list[_StreamEntry]", await self._client.xrevrange(self._stream, count=1))
                cursor = newest[0][0] if newest else "0-0"
        while True:
            with redis_errors("events read"):
                replies = cast(
                    "list[tuple[str, list[_StreamEntry]]] | None",
                    await self._client.xread({self._stream: cursor}, block=self._block_ms, count=500),
                )
            for _stream, entries in replies or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    event = Event.from_json(fields["event"], id=entry_id)
                    if _visible(event, organization_ids):
                        yield event

    async def aclose(self) -> None:
        await self._client.aclose()


def open_event_bus(settings: Settings) -> EventBus:
    if settings.redis_url:
        return RedisEventBus(settings.redis_url, prefix=settings.redis_prefix)
    return InProcessEventBus()
