"""``GET /api/events/stream``: the event bus as server-sent events, scoped to the caller.

Each event is ``id:``, ``event:`` and ``data:`` lines; the data is JSON in the API's camelCase,
``{"id", "type", "organizationId", "at", "data": {...}}``, whatever the bus holds inside (snake_case
payloads, as the library builds them). A ``: ping`` comment keeps idle connections (and the proxies
on the way) open. With Redis, the stream holds the events of every worker process, and
``Last-Event-ID`` resumes after the last event a client saw.

A pump task reads the bus into a small queue of this client's own; when the client reads too
slowly for that queue, the pump drops the client (it may reconnect with its last id) instead of
holding up the bus or the other subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from claude_pool.core.cancelling import cancel_and_wait
from claude_pool.core.errors import BackendUnavailable
from claude_pool.core.logs import log_event
from claude_pool.core.redaction import redact
from claude_pool.events.bus import Event, SubscriberDropped
from claude_pool.http.auth import Principal, current_principal
from claude_pool.http.context import ApiContext, get_context
from claude_pool.http.schemas import ErrorBody, camel_keys

__all__ = ["client_event", "format_event", "router"]

logger = logging.getLogger("claude_pool.http.events")

router = APIRouter(
    prefix="/api/events", tags=["events"], responses={s: {"model": ErrorBody} for s in (401, 403)}
)

Ctx = Annotated[ApiContext, Depends(get_context)]
Caller = Annotated[Principal, Depends(current_principal)]

_END = object()


def client_event(event: Event) -> dict[str, Any]:
    """An event as a stream client reads it: every member in camelCase, the payload's too."""
    return {
        "id": event.id,
        "type": event.type,
        "organizationId": event.organization_id,
        "at": event.at,
        "data": camel_keys(event.data),
    }


def format_event(event: Event) -> str:
    # Redacted like ``Event.to_json``; ids and types are ours, but strip newlines so no line can be
    # forged.
    kind = event.type.replace("\n", " ").replace("\r", " ")
    data = redact(json.dumps(client_event(event), default=str, sort_keys=True))
    return f"id: {event.id}\nevent: {kind}\ndata: {data}\n\n"


async def _pump(
    ctx: ApiContext, orgs: frozenset[str] | None, last_event_id: str | None, queue: asyncio.Queue[Any]
) -> None:
    subscription = ctx.bus.subscribe(orgs, last_event_id=last_event_id)
    try:
        async for event in subscription:
            try:
                queue.put_nowait(format_event(event))
            except asyncio.QueueFull:
                log_event(logger, logging.INFO, "slow event stream client dropped")
                break
    except SubscriberDropped:
        pass
    except BackendUnavailable as exc:
        log_event(logger, logging.WARNING, "event stream ended", error=str(exc))
    finally:
        with contextlib.suppress(Exception):
            await subscription.aclose()  # type: ignore[attr-defined]
        # Always room for the end marker: the consumer reads it even after a full queue.
        with contextlib.suppress(asyncio.QueueEmpty):
            if queue.full():
                queue.get_nowait()
        queue.put_nowait(_END)


async def _stream(
    ctx: ApiContext, orgs: frozenset[str] | None, last_event_id: str | None
) -> AsyncIterator[str]:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=ctx.sse_queue_size)
    pump = asyncio.create_task(_pump(ctx, orgs, last_event_id, queue), name="sse-pump")
    closing = asyncio.create_task(ctx.closing.wait(), name="sse-closing")
    try:
        # Let the pump reach its subscription first, so that what happens after the client sees
        # ``: connected`` is on its stream (a Redis bus needs one round trip more).
        for _ in range(3):
            await asyncio.sleep(0)
        yield ": connected\nretry: 3000\n\n"
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, closing}, timeout=ctx.heartbeat_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                if closing in done:
                    return
                yield ": ping\n\n"
                continue
            item = getter.result()
            if item is _END:
                yield ": dropped: reconnect with Last-Event-ID to resume\n\n"
                return
            yield item
    finally:
        await cancel_and_wait(pump, closing, ignore_errors=True)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
    summary="Events of the caller's organizations, as server-sent events",
)
async def stream_events(
    ctx: Ctx,
    caller: Caller,
    organization_id: Annotated[str | None, Query(alias="organizationId", max_length=64)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> StreamingResponse:
    orgs = caller.organizations
    if organization_id is not None:
        caller.require(organization_id)
        orgs = frozenset({organization_id})
    return StreamingResponse(
        _stream(ctx, orgs, last_event_id or None),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
