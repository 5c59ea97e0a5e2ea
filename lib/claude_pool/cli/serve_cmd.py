"""``claude-pool serve``: the HTTP API (admin routes, execute, event stream, health) under uvicorn.

Clients reach it at ``BASE_URL`` when that is set (a proxy or a public name in front of it), else
at the ``--host`` and ``--port`` it listens on; tokens come from ``CLAUDE_POOL_API_TOKENS`` (see
:mod:`claude_pool.http.auth`). Ctrl-C stops it after running executions had a moment to finish.
"""

from __future__ import annotations

import os

import click

from claude_pool.cli.common import handle_errors, runtime
from claude_pool.core.errors import SettingsError

__all__ = ["client_url", "serve"]

# Listening on every interface: a client on this machine reaches the server on loopback. (Names
# the any-addresses to translate them, binds nothing: hence the noqa.)
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def client_url(host: str, port: int, base_url: str | None = None) -> str:
    """Where clients reach ``serve --host host --port port``: ``BASE_URL`` when set, else the
    address it listens on (loopback for an any-address host)."""
    if base_url and base_url.strip():
        return base_url.strip()
    return _url(_ANY_ADDRESS.get(host, host), port)


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
    # Settings.base_url has a default (port 3000): only a BASE_URL actually set overrides the
    # address this server listens on.
    clients = client_url(host, port, os.environ.get("BASE_URL"))
    click.echo(
        f"claude-pool API listening on {_url(host, port)} (clients: {clients}); "
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
