"""``claude-pool db``: migrations."""

from __future__ import annotations

import click

from claude_pool.cli.common import handle_errors, runtime

__all__ = ["db"]


@click.group()
def db() -> None:
    """The database (DATABASE_URL, or the local SQLite file)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@handle_errors
def upgrade(revision: str) -> None:
    """Create or upgrade the tables to the latest migration."""
    rt = runtime()
    rt.db.upgrade(revision)
    click.echo(f"database {rt.db.display_url} at revision {rt.db.current_revision()}")


@db.command("current")
@handle_errors
def current() -> None:
    """Show the database's migration revision and the newest one."""
    rt = runtime()
    click.echo(
        f"database {rt.db.display_url}: revision {rt.db.current_revision()} (head {rt.db.head_revision()})"
    )
