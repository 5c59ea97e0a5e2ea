"""Prefect's environment for the commands that run flows: state in a predictable place, no
telemetry error line, and a clear message when a configured Prefect server does not answer.
Called before Prefect is imported (its settings are read at import)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import click

from claude_pool.settings import Settings

__all__ = ["prepare_prefect"]


def prepare_prefect(settings: Settings) -> None:
    os.environ.setdefault("PREFECT_HOME", str((settings.home / "prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    api_url = os.environ.get("PREFECT_API_URL", "").strip()
    if not api_url:
        return  # ephemeral mode: Prefect starts a temporary server of its own
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=5) as reply:  # noqa: S310
            if reply.status == 200:
                return
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    else:
        reason = "it did not answer 200 on /health"
    raise click.ClickException(
        f"the Prefect server at PREFECT_API_URL={api_url} is not answering ({reason}). "
        "Start it with `prefect server start`, or unset PREFECT_API_URL to run in Prefect's ephemeral mode."
    )
