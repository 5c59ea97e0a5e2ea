"""``claude-pool demo``: the main job on the embedded default (SQLite, no Redis, Prefect's
ephemeral mode) against local simulators of Anthropic and Slack: a real batch delegation through a
pool of simulated accounts, then the quota sweep, capacity sync and health check, and a summary.

With ``--live`` the same flows talk to Anthropic with the accounts registered in your database
(ANTHROPIC_API_KEY is registered by ``init``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import click

from claude_pool.cli.common import handle_errors
from claude_pool.cli.prefect_env import prepare_prefect
from claude_pool.crypto import generate_key
from claude_pool.settings import Settings

__all__ = ["demo"]

_CLEARED = (
    "DATABASE_URL",
    "REDIS_URL",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_ADMIN_API_KEY",
    "SLACK_BOT_TOKEN",
    "SLACK_BASE_URL",
    "ANTHROPIC_API_KEY",
    "PREFECT_API_URL",
)


def _demo_scenario(seed: int) -> Any:
    from claude_pool.simulator import FaultRule, Limits, Scenario

    # Two healthy accounts with 60 and 120 requests per minute: a batch of 200 needs more than their
    # minute, so requests wait for capacity, usage crosses the alert thresholds, and not one 429 is
    # caused by the pool. acct-3's key is revoked, acct-4 fails every call: fail-over and a breaker.
    base = Scenario.uniform(accounts=4, rpm=120, itpm=400_000, otpm=80_000, seed=seed, round_tokens_to=1)
    orgs = list(base.orgs)
    orgs[0] = type(orgs[0])(orgs[0].id, Limits(rpm=60, itpm=400_000, otpm=80_000), orgs[0].admin_key)
    return base.with_(
        orgs=tuple(orgs),
        faults=(
            FaultRule(
                kind="error", status=503, rate=1.0, targets=("acct-4",)
            ),  # a sick account: the breaker trips
            FaultRule(kind="revoke", targets=("acct-3",)),
        ),
    )


def _echo_summary(summary: dict[str, Any], extra: dict[str, Any]) -> None:
    click.echo("")
    click.echo("=" * 72)
    click.echo(
        f"delegate-batch: {summary['succeeded']}/{summary['requests']} requests succeeded in "
        f"{summary['elapsed_s']} s ({summary['requests_per_s']} req/s)"
    )
    click.echo("requests per account:")
    for name, row in summary["per_account"].items():
        click.echo(
            f"  {name:<10} {row['requests']:>5} requests  {row['input_tokens']:>7} in / {row['output_tokens']:>7} out tokens"
        )
    click.echo(
        f"fail-overs: {summary['failovers']}   failed requests: {summary['failed']} {summary['errors'] or ''}"
    )
    click.echo(f"breaker changes: {len(summary['breaker_transitions'])}")
    for t in summary["breaker_transitions"]:
        click.echo(f"  {t['account']}: {t['from']} -> {t['to']} ({t['reason']})")
    for key, value in extra.items():
        click.echo(f"{key}: {value}")
    click.echo("=" * 72)


async def _run_flows(
    requests: int, concurrency: int, organization_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    from claude_pool_flows import capacity_sync, delegate_batch, health_check, quota_sweep

    questions = [
        {
            "message": f"Question {i}: summarise the benefits of pooling API accounts.",
            "user_id": f"user-{i % 7}",
        }
        for i in range(requests)
    ]
    summary = await delegate_batch(
        requests=questions,
        organization_id=organization_id,
        max_tokens=200,
        concurrency=concurrency,
        chunk_size=max(50, requests // 4),
    )
    sweep = await quota_sweep()
    synced = await capacity_sync()
    probes = await health_check()
    return summary, {
        "quota sweep": f"{sweep['alerts_raised']} alert(s) raised, {sweep['sent']} sent to Slack",
        "capacity sync": f"{synced['accounts']} accounts snapshotted, {synced['leases_reclaimed']} leases reclaimed",
        "health check": ", ".join(
            f"{p['account_name']} {'ok' if p['ok'] else p['outcome']} ({p['status_after']})" for p in probes
        ),
    }


@click.command("demo")
@click.option("--requests", "n_requests", default=200, show_default=True, help="Requests in the batch.")
@click.option("--concurrency", default=16, show_default=True)
@click.option("--seed", default=7, show_default=True, help="Simulator seed: the same seed, the same run.")
@click.option(
    "--live", is_flag=True, help="Talk to Anthropic with your registered accounts instead of the simulator."
)
@handle_errors
def demo(n_requests: int, concurrency: int, seed: int, live: bool) -> None:
    """Run a real batch delegation through a pool and print what happened."""
    if live:
        settings = Settings.from_env()
        prepare_prefect(settings)
        summary, extra = asyncio.run(_run_flows(min(n_requests, 5), min(concurrency, 2), "default"))
        _echo_summary(summary, extra)
        return
    home = Path(os.environ.get("CLAUDE_POOL_HOME") or ".claude-pool") / "demo"
    if home.exists():
        shutil.rmtree(home)  # the demo's own folder: every run starts from nothing, reproducibly
    home.mkdir(parents=True)
    for name in _CLEARED:
        os.environ.pop(name, None)
    os.environ.update(CLAUDE_POOL_HOME=str(home.resolve()), LOG_FILE=str((home / "app.log").resolve()))
    if not os.environ.get("ENCRYPTION_KEY"):
        key_file = home / "encryption.key"
        key_file.write_text(generate_key())
        key_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
        os.environ["ENCRYPTION_KEY"] = key_file.read_text()
        click.echo(f"ENCRYPTION_KEY not set: using a demo key kept in {key_file}")

    from claude_pool.cli.init_cmd import run_checks
    from claude_pool.simulator import register_simulated_accounts, simulator, slack_simulator

    with simulator(_demo_scenario(seed)) as sim, slack_simulator(rate_per_channel=20, burst=20) as slack:
        os.environ.update(
            ANTHROPIC_BASE_URL=sim.base_url, SLACK_BOT_TOKEN=slack.token, SLACK_BASE_URL=slack.base_url
        )
        settings = Settings.from_env()
        prepare_prefect(settings)
        click.echo(f"simulated Anthropic at {sim.base_url}, simulated Slack at {slack.base_url}")
        for line in run_checks(settings):
            click.echo(line.line())
        from claude_pool.runtime import Runtime

        rt = Runtime.from_env(settings)
        register_simulated_accounts(rt.accounts, sim.keys, sim.orgs, organization_id="demo")
        rt.close()
        click.echo(
            f"registered {len(sim.keys)} simulated accounts; running {n_requests} requests through Prefect..."
        )
        summary, extra = asyncio.run(_run_flows(n_requests, concurrency, "demo"))
        stats = sim.stats()
        extra["simulator ground truth"] = (
            f"{stats.total['served']} served, {stats.rate_limited} over-limit 429s, "
            f"{stats.total['fault_503']} injected 503s, {stats.total['rejected_auth']} revoked-key 401s"
        )
        extra["slack messages"] = (
            f"{len(slack.messages_in('#eng-alerts'))} alert(s) in #eng-alerts, "
            f"{len(slack.messages_in('#it-test'))} in #it-test"
        )
        _echo_summary(summary, extra)
    click.echo(
        f"records: claude-pool executions list / alerts list / accounts list (CLAUDE_POOL_HOME={home})"
    )
