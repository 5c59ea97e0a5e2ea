"""``claude-pool serve-flows``: the five deployments served from one process (one machine, no
worker, no work pool); schedules as in prefect.yaml."""

from __future__ import annotations

import click

from claude_pool.cli.common import handle_errors
from claude_pool.cli.prefect_env import prepare_prefect
from claude_pool.settings import Settings

__all__ = ["serve_flows"]


@click.command("serve-flows")
@click.option("--capacity-sync-every", default=60, show_default=True, help="Seconds between capacity syncs.")
@click.option("--quota-sweep-every", default=60, show_default=True)
@click.option("--health-check-every", default=300, show_default=True)
@handle_errors
def serve_flows(capacity_sync_every: int, quota_sweep_every: int, health_check_every: int) -> None:
    """Serve delegate, delegate-batch, capacity-sync, quota-sweep and health-check from this process.

    Needs a Prefect server (PREFECT_API_URL): schedules and runs triggered from the UI or with
    `prefect deployment run` are executed here.
    """
    prepare_prefect(Settings.from_env())
    from prefect import serve

    from claude_pool_flows import capacity_sync, delegate, delegate_batch, health_check, quota_sweep

    serve(
        delegate.to_deployment(name="delegate"),
        delegate_batch.to_deployment(name="delegate-batch"),
        capacity_sync.to_deployment(name="capacity-sync", interval=capacity_sync_every),
        quota_sweep.to_deployment(name="quota-sweep", interval=quota_sweep_every),
        health_check.to_deployment(name="health-check", interval=health_check_every),
    )
