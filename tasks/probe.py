"""Health check steps: which accounts to probe, and one probe."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from claude_pool.maintenance.probe import probe_account
from claude_pool.storage import AccountStatus
from claude_pool_tasks.context import open_pool, retry_on_infrastructure, runtime

__all__ = ["accounts_to_probe", "probe"]


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
def accounts_to_probe() -> list[str]:
    """Active accounts, and those marked invalid (their key may have been restored upstream)."""
    wanted = (AccountStatus.ACTIVE, AccountStatus.INVALID_CREDENTIALS)
    return [a.id for a in runtime().accounts.list() if a.status in wanted]


@task(retries=1, retry_delay_seconds=5, retry_condition_fn=retry_on_infrastructure, cache_policy=NO_CACHE)
async def probe(account_ids: list[str]) -> list[dict[str, Any]]:
    cfg = runtime().config.health_check
    async with open_pool() as pool:
        return [asdict(await probe_account(pool, a, method=cfg.method, model=cfg.model)) for a in account_ids]
