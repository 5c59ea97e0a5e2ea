"""Delegation activity notes to ``SLACK_ACTIVITY_CHANNEL``. A note that cannot be sent is logged,
never allowed to fail the delegation it reports on."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from claude_pool.core.errors import ClaudePoolError, NotificationError
from claude_pool.quota.slack import SlackNotifier
from claude_pool_tasks.context import runtime

__all__ = ["notify_activity"]

logger = logging.getLogger("claude_pool.notify")


def _account_name(account_id: str | None) -> str | None:
    if account_id is None:
        return None
    try:
        name: str = runtime().accounts.get(account_id).name
        return name
    except ClaudePoolError:
        return None


@task(cache_policy=NO_CACHE)
async def notify_activity(execution: dict[str, Any]) -> bool:
    rt = runtime()
    notifier = SlackNotifier(rt.settings)
    if not notifier.enabled:
        return False
    try:
        await notifier.post_delegation_activity(
            organization_id=execution["organization_id"],
            user_id=execution.get("user_id"),
            account_name=await asyncio.to_thread(_account_name, execution.get("account_id")),
            status=execution["status"],
            input_tokens=execution.get("input_tokens"),
            output_tokens=execution.get("output_tokens"),
            latency_ms=execution.get("latency_ms"),
            model=execution.get("model"),
            max_wait=5.0,
        )
    except NotificationError as exc:
        logger.warning("activity note for execution %s not sent: %s", execution["execution_id"], exc)
        return False
    finally:
        await notifier.aclose()
    return True
