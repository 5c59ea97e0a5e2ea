"""``claude-pool serve``: the HTTP API (admin routes, execute, event stream, health) under uvicorn.

Clients reach it at ``BASE_URL``; tokens come from ``CLAUDE_POOL_API_TOKENS`` (see
:mod:`claude_pool.http.auth`). Ctrl-C stops it after running executions had a moment to finish.
"""

from __future__ import annotations

import click

from claude_pool.cli.common import handle_errors, runtime
from claude_pool.core.errors import SettingsError

__all__ = ["serve"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", default=3000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on."
)
@click.option(
    "--heartbeat",
    default=15.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between keep-alive comments on the event stream.",
)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@handle_errors
def serve(host: str, port: int, heartbeat: float, access_log: bool) -> None:
    """Serve the HTTP API until Ctrl-C."""
    import uvicorn

    from claude_pool.http import ApiTokens, create_app

    tokens = ApiTokens.from_env()  # refuses a malformed CLAUDE_POOL_API_TOKENS before anything starts
    rt = runtime(log_to_console=True)
    if rt.db.current_revision() != rt.db.head_revision():
        # Serving on a schema the code does not expect fails on the first request: say it now.
        raise SettingsError(
            "DATABASE_URL",
            f"the database {rt.db.display_url} is not migrated to the current schema",
            "run `claude-pool db upgrade` (or `claude-pool init`) first",
        )
    app = create_app(rt, tokens=tokens, heartbeat_seconds=heartbeat)
    click.echo(
        f"claude-pool API on http://{host}:{port} (clients: {rt.settings.base_url}); "
        f"{len(tokens)} token(s); Ctrl-C to stop",
        err=True,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep our handlers (log file, redaction)
        log_level=rt.settings.log_level.lower(),
        access_log=access_log,
        # Event streams never end by themselves: give them this long, then close them.
        timeout_graceful_shutdown=5,
    )
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        # uvicorn has shut down cleanly and re-raised the Ctrl-C it caught: a normal stop.
        pass
    finally:
        rt.close()
