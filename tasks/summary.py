"""The batch's summary: an artifact for the Prefect UI and one activity note for the batch."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from claude_pool.quota.slack import SlackNotifier
from claude_pool.records.batch_report import batch_summary, summary_headline, summary_markdown
from claude_pool.records.notes import note_batch
from claude_pool_tasks.context import runtime

__all__ = ["summarize_batch"]


@task(cache_policy=NO_CACHE)
async def summarize_batch(outcomes: list[dict[str, Any]], since: datetime, elapsed_s: float) -> dict[str, Any]:
    """The summary artifact, and one activity note for the whole batch (not one per request)."""
    rt = runtime()
    summary = await batch_summary(rt, outcomes, since, elapsed_s)
    await acreate_markdown_artifact(
        summary_markdown(summary), key="delegate-batch-summary", description="what the batch did"
    )
    async with SlackNotifier(rt.settings) as notifier:
        await note_batch(notifier, summary_headline(summary))
    return summary
