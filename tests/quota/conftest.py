"""Quota tests: a migrated database of each kind (SQLite, PostgreSQL), accounts whose names and keys
look like canaries, and a notifier pointed at the Slack simulator."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from claude_pool.accounts.registry import AccountService
from claude_pool.core.config import PoolConfig, load_config
from claude_pool.core.crypto import KeyRing
from claude_pool.core.settings import Secret, Settings
from claude_pool.quota import QuotaObservation
from claude_pool.quota.slack import SlackNotifier
from claude_pool.simulator import RunningSlackSimulator
from claude_pool.storage import ClaudeAccount, Database

# Key-shaped text in an account name must be masked in every message; the keys must never appear.
CANARY_KEY = "sk-ant-api03-CANARYquota" + "q" * 60 + "Qx7z"
OTHER_KEY = "sk-ant-api03-CANARYother" + "o" * 60 + "Ow3y"
CANARY_NAME = "leaky sk-ant-api03-CANARYinName12345 <!channel> & co"
WINDOW = "2026-11-26T09:41"


def observation_of(
    account: ClaudeAccount,
    fraction: float,
    *,
    metric: str = "requests_per_minute",
    window: str = WINDOW,
    limit: float = 1000.0,
) -> QuotaObservation:
    """``account`` has used ``fraction`` of its ``limit`` of ``metric`` in ``window``."""
    return QuotaObservation(
        account_id=account.id,
        organization_id=account.organization_id,
        account_name=account.name,
        metric=metric,
        observed=fraction * limit,
        limit=limit,
        window=window,
    )


@dataclass
class QuotaWorld:
    db: Database
    config: PoolConfig
    accounts: AccountService
    primary: ClaudeAccount
    secondary: ClaudeAccount

    def observation(
        self,
        fraction: float,
        *,
        metric: str = "requests_per_minute",
        window: str = WINDOW,
        account: ClaudeAccount | None = None,
        limit: float = 1000.0,
    ) -> QuotaObservation:
        return observation_of(account or self.primary, fraction, metric=metric, window=window, limit=limit)


@pytest.fixture
def config() -> PoolConfig:
    return load_config(None, env={})


@pytest.fixture
def world(db: Database, config: PoolConfig) -> QuotaWorld:
    service = AccountService(db, KeyRing(os.urandom(32)), config)
    primary = service.register(
        {"organization_id": "org-a", "name": CANARY_NAME, "tier": "pro", "api_key": CANARY_KEY}
    )
    secondary = service.register(
        {"organization_id": "org-b", "name": "team-b-secondary", "tier": "pro", "api_key": OTHER_KEY}
    )
    return QuotaWorld(db, config, service, primary, secondary)


def slack_settings(sim: RunningSlackSimulator | None, **overrides: object) -> Settings:
    base: dict[str, object] = {"log_file": None}
    if sim is not None:
        base.update(slack_bot_token=Secret(sim.token), slack_base_url=sim.base_url)
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def notifier(slack_sim: RunningSlackSimulator) -> AsyncIterator[SlackNotifier]:
    async with SlackNotifier(slack_settings(slack_sim), max_wait=5.0) as n:
        yield n
