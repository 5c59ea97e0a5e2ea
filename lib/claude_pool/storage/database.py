"""Engine, sessions and migrations for SQLite (default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from claude_pool.core.errors import StorageError
from claude_pool.core.settings import Settings, normalize_database_url
from claude_pool.core.sqlite_wal import use_wal

__all__ = ["Database"]

_BUSY_TIMEOUT_SECONDS = 30.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while a flow run in another process writes; busy_timeout waits
    # for the lock instead of failing at once.
    use_wal(cursor, timeout=_BUSY_TIMEOUT_SECONDS)
    # In WAL mode NORMAL survives a process crash (a flow run killed mid-write) and skips the
    # fsync per commit that would cap the embedded default at ~100 writes/s.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_SECONDS * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _describe(exc: SQLAlchemyError, where: str) -> str:
    # Only the first line: SQLAlchemy appends the statement's parameters below it.
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"database error on {where}: {type(exc).__name__}: {first_line}"


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_database_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.database_url)

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back on any error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except SQLAlchemyError as exc:
                # On a connection that just died the rollback fails too: the first error is the news.
                with contextlib.suppress(SQLAlchemyError):
                    session.rollback()
                raise StorageError(_describe(exc, self.display_url)) from exc
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StorageError(_describe(exc, self.display_url)) from exc

    # --- migrations ------------------------------------------------------------------------
    def _alembic_config(self) -> Any:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(resources.files("claude_pool.storage") / "migrations"))
        config.attributes["engine"] = self.engine
        return config

    def upgrade(self, revision: str = "head") -> None:
        from alembic import command

        try:
            command.upgrade(self._alembic_config(), revision)
        except SQLAlchemyError as exc:
            raise StorageError("migration failed: " + _describe(exc, self.display_url)) from exc

    def downgrade(self, revision: str) -> None:
        from alembic import command

        command.downgrade(self._alembic_config(), revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def dispose(self) -> None:
        self.engine.dispose()
