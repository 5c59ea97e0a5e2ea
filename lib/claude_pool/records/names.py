"""Accounts by name, for people: the one lookup behind every view and note that shows one."""

from __future__ import annotations

from claude_pool.pool.directory import AccountDirectory

__all__ = ["account_name", "account_names"]


async def account_names(directory: AccountDirectory) -> dict[str, str]:
    """Every account's name by id, from the pool's directory (cached briefly: no query per view)."""
    return {account.id: account.name for account in await directory.all()}


async def account_name(directory: AccountDirectory, account_id: str | None) -> str | None:
    """The account's name; ``None`` when there is no account or it has been deleted since."""
    if account_id is None:
        return None
    return (await account_names(directory)).get(account_id)
