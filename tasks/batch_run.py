"""What the chunk tasks of one batch share: one pool, one set of in-flight slots, and the progress,
shown twice (a bar on the console, a progress artifact in the Prefect UI).

The chunk tasks of a batch run in the flow's own process and event loop, so they find the flow's
``BatchRun`` here by flow run id. One pool rather than one per chunk: two pools in one process
contend for the embedded store's SQLite lock with each other, which measured as a fifth of the
batch's throughput. Updates to the Prefect API are throttled so that progress costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from claude_pool.pool import Pool
from claude_pool.records.view import ExecutionView
from claude_pool_tasks.context import open_pool

__all__ = ["BatchRun", "batch_run_for", "pool_for"]

logger = logging.getLogger("claude_pool.batch")
_runs: dict[str, BatchRun] = {}


class BatchRun:
    def __init__(
        self, flow_run_id: str, total: int, *, concurrency: int = 16, ui_interval: float = 1.0
    ) -> None:
        self.flow_run_id = flow_run_id
        self.slots = asyncio.Semaphore(max(1, concurrency))
        self.total = max(total, 1)
        self.done = 0
        self.failed = 0
        self._ui_interval = ui_interval
        self._last_ui = 0.0
        self._last_quarter = 0
        self._artifact_id: UUID | None = None
        self._bar: Any = None
        self._resources = contextlib.AsyncExitStack()
        self.pool: Pool | None = None

    async def __aenter__(self) -> BatchRun:
        self.pool = await self._resources.enter_async_context(open_pool())
        _runs[self.flow_run_id] = self
        try:
            self._artifact_id = await acreate_progress_artifact(
                0.0, key="delegate-batch-progress", description=f"{self.total} requests"
            )
        except Exception:  # progress is a view; a missing API must not stop the batch
            logger.debug("no progress artifact", exc_info=True)
        if sys.stderr.isatty():
            from rich.progress import Progress

            self._bar = Progress(transient=False)
            self._bar.start()
            self._task = self._bar.add_task("delegate-batch", total=self.total)
        return self

    async def __aexit__(self, *_: object) -> None:
        _runs.pop(self.flow_run_id, None)
        await self._resources.aclose()
        await self._push_ui(force=True)
        if self._bar is not None:
            self._bar.stop()

    async def advance(self, outcome: ExecutionView) -> None:
        """One more request done (the ``on_done`` of its chunk's ``run_batch``)."""
        self.done += 1
        self.failed += int(not outcome.succeeded)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        else:
            # No terminal to redraw a bar on (CI, a worker's log): a line at each quarter.
            quarter = self.done * 4 // self.total
            if quarter != self._last_quarter:
                self._last_quarter = quarter
                line = f"delegate-batch progress: {self.done}/{self.total} ({self.failed} failed)"
                logger.info(line)
                print(line, file=sys.stderr, flush=True)
        await self._push_ui()

    async def _push_ui(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._artifact_id is None or (not force and now - self._last_ui < self._ui_interval):
            return
        self._last_ui = now
        try:
            await aupdate_progress_artifact(self._artifact_id, 100.0 * self.done / self.total)
        except Exception:
            logger.debug("progress update failed", exc_info=True)


def batch_run_for(flow_run_id: str | None) -> BatchRun | None:
    return _runs.get(flow_run_id) if flow_run_id else None


@contextlib.asynccontextmanager
async def pool_for(batch: BatchRun | None) -> AsyncIterator[Pool]:
    """The batch's shared pool when a chunk runs in its flow's process, else one of its own."""
    if batch is not None and batch.pool is not None:
        yield batch.pool
        return
    async with open_pool() as pool:
        yield pool
