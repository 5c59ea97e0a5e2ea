"""What every command shares: the runtime, error reporting, tables."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from claude_pool.core.errors import ClaudePoolError
from claude_pool.core.logs import configure_logging
from claude_pool.runtime import Runtime

__all__ = ["echo_json", "echo_table", "handle_errors", "migrated_runtime", "runtime"]

F = TypeVar("F", bound=Callable[..., Any])


def runtime(*, log_to_console: bool = False) -> Runtime:
    rt = Runtime.from_env()
    # Commands print their own results; log lines go to the log file (and stderr when asked).
    configure_logging(rt.settings, console=log_to_console)
    return rt


def migrated_runtime() -> Runtime:
    """:func:`runtime` with the database at the newest migration: where every command that reads or
    writes rows starts (running it twice changes nothing)."""
    rt = runtime()
    rt.db.upgrade()
    return rt


def handle_errors(func: F) -> F:
    """A ClaudePoolError becomes one clear line on stderr and exit status 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ClaudePoolError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))
