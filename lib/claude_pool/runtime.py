"""What a process needs to work with the pool, built once from the environment.

The CLI, the Prefect tasks and the HTTP API all start from a ``Runtime``; only ids and plain
values are passed between them, never a key or a client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from claude_pool.accounts.registry import AccountService
from claude_pool.core.config import PoolConfig, load_config
from claude_pool.core.crypto import KeyRing
from claude_pool.core.settings import Settings
from claude_pool.storage import Database

__all__ = ["Runtime"]


@dataclass
class Runtime:
    settings: Settings
    config: PoolConfig
    _db: Database | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> Runtime:
        settings = settings or Settings.from_env()
        return cls(settings=settings, config=load_config(settings.config_path))

    @cached_property
    def db(self) -> Database:
        return self._db or Database.from_settings(self.settings)

    @cached_property
    def keyring(self) -> KeyRing:
        return KeyRing.from_settings(self.settings)

    @cached_property
    def accounts(self) -> AccountService:
        return AccountService(self.db, lambda: self.keyring, self.config)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
