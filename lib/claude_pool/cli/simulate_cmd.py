"""``claude-pool simulate``: serve the local Anthropic (and optionally Slack) simulator until Ctrl-C.

It prints the simulator's own fake keys: they are valid nowhere but here, and printing them is what
lets a developer point the pool, curl or a notebook at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

import click

__all__ = ["simulate"]


def _scenario(
    scenario_file: Path | None,
    accounts: int,
    seed: int,
    rpm: int,
    itpm: int,
    otpm: int,
    keys_per_org: int,
    exact_headers: bool,
) -> Any:
    from claude_pool.simulator import Scenario

    if scenario_file is not None:
        scenario = Scenario.from_file(scenario_file)
    else:
        scenario = Scenario.uniform(
            accounts, rpm=rpm, itpm=itpm, otpm=otpm, seed=seed, keys_per_org=keys_per_org
        )
    return scenario.with_(round_tokens_to=1) if exact_headers else scenario


def _print_human(described: dict[str, Any], base_url: str, slack: dict[str, str] | None) -> None:
    click.echo(f"Anthropic simulator on {base_url}  (control: {base_url}/_sim/stats, /_sim/faults, ...)")
    keys_by_org: dict[str, list[dict[str, Any]]] = {}
    for key in described["keys"]:
        keys_by_org.setdefault(key["org"], []).append(key)
    for org in described["organizations"]:
        limits = org["limits"]
        click.echo(
            f"\norganization {org['id']}: {limits['rpm']} RPM, {limits['itpm']} ITPM, {limits['otpm']} OTPM"
        )
        click.echo(f"  admin key  {org['admin_key']}")
        for key in keys_by_org.get(org["id"], []):
            click.echo(f"  {key['name']:<10} {key['key']}")
    if slack:
        click.echo(f"\nSlack simulator on {slack['base_url']}  token {slack['token']}")
    click.echo("\nCtrl-C to stop.")


async def _serve(scenario: Any, host: str, port: int, slack_port: int | None, as_json: bool) -> None:
    from claude_pool.simulator import AnthropicSimulator, SimulatorState, SlackSimulator
    from claude_pool.simulator.server import bind_socket, start_app

    state = SimulatorState(scenario)
    sock = bind_socket(host, port)
    runners = [await start_app(AnthropicSimulator(state).app(), sock)]
    base_url = f"http://{host}:{sock.getsockname()[1]}"
    slack_info: dict[str, str] | None = None
    if slack_port is not None:
        slack = SlackSimulator()
        slack_sock = bind_socket(host, slack_port)
        runners.append(await start_app(slack.app(), slack_sock))
        slack_info = {
            "base_url": f"http://{host}:{slack_sock.getsockname()[1]}/api/",
            "token": slack.config.tokens[0],
        }

    described = state.describe()
    if as_json:
        click.echo(json.dumps({"base_url": base_url, **described, "slack": slack_info}))
    else:
        _print_human(described, base_url, slack_info)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on some platforms
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()


@click.command()
@click.option("--accounts", default=3, show_default=True, help="Organizations to simulate (one key each).")
@click.option(
    "--keys-per-org", default=1, show_default=True, help="Keys per organization (they share its limits)."
)
@click.option(
    "--port", default=8787, show_default=True, help="Port of the Anthropic simulator (0 = any free one)."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A scenario file (JSON or YAML); overrides --accounts and the limits.",
)
@click.option("--slack-port", type=int, default=None, help="Also serve the Slack simulator on this port.")
@click.option("--seed", default=0, show_default=True, help="Derives the keys, answer lengths and fault dice.")
@click.option("--rpm", default=50, show_default=True, help="Requests per minute per organization.")
@click.option("--itpm", default=30_000, show_default=True, help="Input tokens per minute per organization.")
@click.option("--otpm", default=8_000, show_default=True, help="Output tokens per minute per organization.")
@click.option("--exact-headers", is_flag=True, help="Do not round token 'remaining' headers to the thousand.")
@click.option("--json", "as_json", is_flag=True, help="Print what is served as one JSON line.")
def simulate(
    accounts: int,
    keys_per_org: int,
    port: int,
    host: str,
    scenario_file: Path | None,
    slack_port: int | None,
    seed: int,
    rpm: int,
    itpm: int,
    otpm: int,
    exact_headers: bool,
    as_json: bool,
) -> None:
    """Serve a local Anthropic API (and Slack) with real rate limits, until Ctrl-C."""
    try:
        scenario = _scenario(scenario_file, accounts, seed, rpm, itpm, otpm, keys_per_org, exact_headers)
    except (ValueError, TypeError, KeyError) as exc:
        raise click.BadParameter(str(exc), param_hint="--scenario") from exc
    try:
        asyncio.run(_serve(scenario, host, port, slack_port, as_json))
    except KeyboardInterrupt:
        click.echo("stopped.", err=True)
