"""Activity notes to Slack's ``SLACK_ACTIVITY_CHANNEL``: one per delegation, one per batch.

A note is only a note: one that cannot be sent (Slack down, or rate-limited beyond
:data:`NOTE_MAX_WAIT`) is logged and dropped, never allowed to fail or hold up what it reports on.
Without ``SLACK_BOT_TOKEN`` nothing is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from claude_pool.core.errors import NotificationError
from claude_pool.core.logs import log_event
from claude_pool.quota.slack import SlackNotifier
from claude_pool.records.view import ExecutionView

__all__ = ["NOTE_MAX_WAIT", "note_batch", "note_execution"]

logger = logging.getLogger("claude_pool.notes")

#: How long a note may wait out Slack's rate limit before it is given up.
NOTE_MAX_WAIT = 5.0


async def note_execution(notifier: SlackNotifier, execution: ExecutionView) -> bool:
    """Tell the activity channel how a delegation ended; True when Slack took the note."""
    post = notifier.post_delegation_activity(
        organization_id=execution.organization_id,
        user_id=execution.user_id,
        account_name=execution.account_name,
        status=execution.status,
        input_tokens=execution.input_tokens,
        output_tokens=execution.output_tokens,
        latency_ms=execution.latency_ms,
        model=execution.model,
        max_wait=NOTE_MAX_WAIT,
    )
    return await _sent(post, note="execution", execution_id=execution.execution_id)


async def note_batch(notifier: SlackNotifier, headline: str) -> bool:
    """One note for a whole batch (never one per request); True when Slack took it."""
    return await _sent(notifier.post_activity(headline, max_wait=NOTE_MAX_WAIT), note="batch")


async def _sent(post: Awaitable[str | None], **context: str | None) -> bool:
    try:
        ts = await post
    except NotificationError as exc:
        log_event(logger, logging.WARNING, "slack activity note not sent", error=exc.error, **context)
        return False
    return ts is not None
