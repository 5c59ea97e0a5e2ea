"""The commands that run flows, ``claude-pool demo`` and ``claude-pool serve-flows``.

They reach the ``claude-pool`` command line through the ``claude_pool.commands`` entry point
(pyproject.toml): the library's CLI knows nothing of Prefect or of this package.
"""

from __future__ import annotations

import asyncio
import os
import urllib.error
import urllib.request

import click

from claude_pool.cli.common import handle_errors
from claude_pool.cli.init_cmd import run_checks
from claude_pool.core.config import load_config
from claude_pool.core.settings import Settings
from claude_pool.simulator.demo import demo_questions, demo_rig, report_lines

__all__ = ["demo", "prepare_prefect", "serve_flows"]


def prepare_prefect(settings: Settings, *, quiet: bool = False) -> None:
    """Prefect's state in a predictable place, no telemetry, and a clear message when a configured
    Prefect server does not answer. Called before Prefect is imported (it reads its settings then)."""
    os.environ.setdefault("PREFECT_HOME", str((settings.home / "prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect gives its ephemeral server 20 s to start; a fresh PREFECT_HOME (its database built
    # from scratch) took 25-30 s on a 2-core machine and the demo died with "Timed out while
    # attempting to connect to ephemeral Prefect API server".
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    if quiet:
        # The console shows the progress and the summary; each run's log stays in Prefect's API.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
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


async def _run_flows(requests: int, concurrency: int, organization_id: str) -> list[str]:
    from claude_pool_flows import capacity_sync, delegate_batch, health_check, quota_sweep

    summary = await delegate_batch(
        requests=demo_questions(requests),
        organization_id=organization_id,
        max_tokens=200,
        concurrency=concurrency,
        chunk_size=max(50, requests // 4),
    )
    return report_lines(summary, await quota_sweep(), await capacity_sync(), await health_check())


@click.command("demo")
@click.option("--requests", "n_requests", default=200, show_default=True, help="Requests in the batch.")
@click.option("--concurrency", default=16, show_default=True)
@click.option("--seed", default=7, show_default=True, help="Simulator seed: the same seed, the same run.")
@click.option(
    "--live", is_flag=True, help="Talk to Anthropic with your registered accounts instead of the simulator."
)
@handle_errors
def demo(n_requests: int, concurrency: int, seed: int, live: bool) -> None:
    """Run a real batch delegation through a pool and print what happened.

    Against local simulators of Anthropic and Slack on the embedded default (SQLite, no Redis,
    Prefect's ephemeral mode); with --live, against Anthropic with your registered accounts."""
    if live:
        prepare_prefect(Settings.from_env())
        _echo(asyncio.run(_run_flows(min(n_requests, 5), min(concurrency, 2), "default")))
        return
    with demo_rig(seed) as rig:
        prepare_prefect(rig.settings, quiet=True)
        _echo(rig.notes + [check.line() for check in run_checks(rig.settings)])
        click.echo(f"running {n_requests} requests through Prefect (every event in {rig.settings.log_file})...")
        lines = asyncio.run(_run_flows(n_requests, concurrency, "demo"))
        _echo(lines[:-1] + [f"{k}: {v}" for k, v in rig.ground_truth().items()] + lines[-1:])
    click.echo(f"records: claude-pool executions list / alerts list / accounts list (CLAUDE_POOL_HOME={rig.home})")


def _echo(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


@click.command("serve-flows")
@handle_errors
def serve_flows() -> None:
    """Serve delegate, delegate-batch, capacity-sync, quota-sweep and health-check from this process.

    Needs a Prefect server (PREFECT_API_URL): schedules and runs triggered from the UI or with
    `prefect deployment run` are executed here. The schedules are the config's
    capacity.syncIntervalSeconds, alerts.sweepIntervalSeconds and healthCheck.intervalSeconds.
    """
    settings = Settings.from_env()
    prepare_prefect(settings)
    from prefect import serve

    from claude_pool_flows.schedules import served_deployments

    serve(*served_deployments(load_config(settings.config_path)))
