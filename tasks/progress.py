"""Batch progress, shown twice: a bar on the console and a progress artifact in the Prefect UI.

The chunk tasks of one batch run in the flow's own process, so they find the flow's tracker here
by flow run id; updates to the Prefect API are throttled so that progress never costs throughput.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any
from uuid import UUID

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

__all__ = ["BatchProgress", "progress_for"]

logger = logging.getLogger("claude_pool.batch")
_trackers: dict[str, BatchProgress] = {}


class BatchProgress:
    def __init__(self, flow_run_id: str, total: int, *, ui_interval: float = 1.0) -> None:
        self.flow_run_id = flow_run_id
        self.total = max(total, 1)
        self.done = 0
        self.failed = 0
        self._ui_interval = ui_interval
        self._last_ui = 0.0
        self._last_logged_tenth = -1
        self._artifact_id: UUID | None = None
        self._bar: Any = None

    async def __aenter__(self) -> BatchProgress:
        _trackers[self.flow_run_id] = self
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
        _trackers.pop(self.flow_run_id, None)
        await self._push_ui(force=True)
        if self._bar is not None:
            self._bar.stop()

    async def advance(self, *, failed: bool = False) -> None:
        self.done += 1
        self.failed += int(failed)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        else:
            tenth = self.done * 10 // self.total
            if tenth != self._last_logged_tenth:
                self._last_logged_tenth = tenth
                logger.info("delegate-batch progress: %d/%d (%d failed)", self.done, self.total, self.failed)
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


def progress_for(flow_run_id: str | None) -> BatchProgress | None:
    return _trackers.get(flow_run_id) if flow_run_id else None
