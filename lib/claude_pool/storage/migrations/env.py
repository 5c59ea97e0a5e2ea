"""Alembic environment: runs on the engine handed over by ``Database`` (never a URL in a file)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from claude_pool.storage import models  # noqa: F401  (registers the tables on the metadata)

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
