"""What the routes share inside one server process: the runtime, the open pool, the event bus,
Slack, and the executions still running in the background."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from claude_pool.core.cancelling import cancel_and_wait
from claude_pool.events.bus import EventBus
from claude_pool.pool import Pool
from claude_pool.pool.light_calls import LightCalls
from claude_pool.quota.slack import SlackNotifier
from claude_pool.records.executions import ExecutionStore
from claude_pool.runtime import Runtime

__all__ = ["ApiContext", "get_context"]

logger = logging.getLogger("claude_pool.http")


@dataclass
class ApiContext:
    runtime: Runtime
    pool: Pool
    bus: EventBus
    slack: SlackNotifier
    executions: ExecutionStore
    light_calls: LightCalls
    heartbeat_seconds: float = 15.0
    sse_queue_size: int = 1000
    # Strong references: the event loop keeps only weak ones, and a task nobody holds may be
    # garbage collected halfway through an execution.
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task %s failed: %r", task.get_name(), task.exception())

    async def drain(self, timeout: float) -> None:
        """Let running executions finish (up to ``timeout`` s), then cancel what is left."""
        self.closing.set()
        pending = set(self.tasks)
        if pending:
            _done, still = await asyncio.wait(pending, timeout=timeout)
            # Their errors are logged as they end (_forget).
            await cancel_and_wait(*still, ignore_errors=True)


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx
