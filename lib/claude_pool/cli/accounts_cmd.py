"""``claude-pool accounts``: the account registry from the command line.

An API key is read from stdin or from the variable named by ``--api-key-env``, never from an
argument: arguments land in shell history and in the process list.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import click

from claude_pool.accounts.registry import AccountService
from claude_pool.cli.common import echo_json, echo_table, handle_errors, migrated_runtime
from claude_pool.core.errors import ClaudePoolError, InvalidInput
from claude_pool.runtime import Runtime
from claude_pool.storage import ClaudeAccount

__all__ = ["accounts"]


def _read_api_key(api_key_env: str | None) -> str:
    if api_key_env:
        value = os.environ.get(api_key_env, "")
        if not value.strip():
            raise InvalidInput(
                "--api-key-env", f"the variable {api_key_env} is empty or not set", "export it first"
            )
        return value.strip()
    if sys.stdin.isatty():
        return str(click.prompt("Anthropic API key", hide_input=True)).strip()
    value = sys.stdin.readline().strip()
    if not value:
        raise InvalidInput(
            "api_key", "nothing on standard input", "pipe the key in, or use --api-key-env VAR"
        )
    return value


def _limit_options(func: Any) -> Any:
    options = [
        click.option(
            "--rpm", "requests_per_minute", type=int, help="Requests per minute (overrides the tier)."
        ),
        click.option("--itpm", "input_tokens_per_minute", type=int, help="Input tokens per minute."),
        click.option("--otpm", "output_tokens_per_minute", type=int, help="Output tokens per minute."),
        click.option("--daily-token-budget", type=int),
        click.option("--monthly-token-budget", type=int),
        click.option("--monthly-spend-budget-usd", type=float),
        click.option("--max-in-flight", type=int, help="Cap on requests in flight on this account."),
        click.option("--priority", type=int, help="Lower is tried first by the priority strategy."),
        click.option("--weight", type=int, help="Share under the weighted strategy."),
        click.option(
            "--capacity-group", help="Keys of one Anthropic organization share its limits: same group."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _summary(service: AccountService, account: ClaudeAccount) -> dict[str, Any]:
    return service.view(account).model_dump(mode="json")


@click.group()
def accounts() -> None:
    """Register and manage Anthropic accounts (one API key each)."""


@accounts.command("add")
@click.option("--org", "organization_id", required=True, help="Your organization (tenant) id.")
@click.option("--name", required=True)
@click.option("--tier", required=True, help="free, pro, enterprise, or a tier from config.")
@click.option("--api-key-env", help="Read the key from this environment variable instead of stdin.")
@click.option("--json", "as_json", is_flag=True)
@_limit_options
@handle_errors
def add(
    organization_id: str, name: str, tier: str, api_key_env: str | None, as_json: bool, **limits: Any
) -> None:
    """Register an account; the key is read from stdin (or --api-key-env)."""
    rt = migrated_runtime()
    data = {k: v for k, v in limits.items() if v is not None}
    data.update(organization_id=organization_id, name=name, tier=tier, api_key=_read_api_key(api_key_env))
    account = rt.accounts.register(data)
    if as_json:
        echo_json(_summary(rt.accounts, account))
    else:
        click.echo(
            f"registered account {account.id} ({account.name}, {account.tier}, key {account.api_key_hint})"
        )


@accounts.command("list")
@click.option("--org", "organization_id")
@click.option("--status")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def list_(organization_id: str | None, status: str | None, as_json: bool) -> None:
    """List accounts with live headroom and breaker state; keys are shown only as hints."""
    from claude_pool.maintenance.capacity_sync import headroom_text

    rt = migrated_runtime()
    rows = rt.accounts.list(organization_id=organization_id, status=status)
    live = _live_view(rt)
    if as_json:
        echo_json([{**_summary(rt.accounts, a), **live.get(a.id, {})} for a in rows])
        return
    table = []
    for a in rows:
        limits = rt.accounts.view(a).limits
        now = live.get(a.id, {})
        headroom = now.get("headroom")
        table.append(
            [
                a.id,
                a.organization_id,
                a.name,
                a.tier,
                a.status,
                a.api_key_hint,
                a.priority,
                a.weight,
                a.capacity_group or "-",
                f"{limits.requests_per_minute}/{limits.input_tokens_per_minute}/{limits.output_tokens_per_minute}",
                "?" if headroom is None else headroom_text(headroom, now.get("levels_known", True)),
                now.get("breaker_state", "?"),
            ]
        )
    echo_table(
        [
            "id",
            "org",
            "name",
            "tier",
            "status",
            "key",
            "prio",
            "weight",
            "group",
            "rpm/itpm/otpm",
            "headroom",
            "breaker",
        ],
        table,
    )
    if not live and rows:
        click.echo(
            "(live headroom and breaker state unavailable: the capacity store did not answer)", err=True
        )


def _live_view(rt: Runtime) -> dict[str, dict[str, Any]]:
    """Headroom and breaker state per account from the capacity store ({} when it is down)."""
    from claude_pool.maintenance.capacity_sync import snapshot_pool
    from claude_pool.pool import Pool

    async def read() -> dict[str, dict[str, Any]]:
        async with Pool.open(rt) as pool:
            return {
                r.account_id: {
                    "headroom": r.headroom,
                    "levels_known": r.levels_known,
                    "breaker_state": r.breaker_state,
                    "in_flight": r.in_flight,
                }
                for r in await snapshot_pool(pool)
            }

    try:
        return asyncio.run(read())
    except ClaudePoolError:
        return {}


@accounts.command("show")
@click.argument("reference")
@click.option("--org", "organization_id")
@handle_errors
def show(reference: str, organization_id: str | None) -> None:
    """Show one account (by id, or by a name unique in its organization)."""
    rt = migrated_runtime()
    echo_json(_summary(rt.accounts, rt.accounts.get(reference, organization_id=organization_id)))


@accounts.command("update")
@click.argument("reference")
@click.option("--name")
@click.option("--tier")
@_limit_options
@handle_errors
def update(reference: str, **changes: Any) -> None:
    """Change limits, priority, weight, capacity group, tier or name."""
    rt = migrated_runtime()
    data = {k: v for k, v in changes.items() if v is not None}
    if not data:
        raise InvalidInput("options", "nothing to change", "give at least one option, see --help")
    account = rt.accounts.update(reference, data)
    click.echo(f"updated account {account.id} ({account.name})")


@accounts.command("disable")
@click.argument("reference")
@click.option("--reason")
@handle_errors
def disable(reference: str, reason: str | None) -> None:
    """Stop using an account until it is enabled again."""
    rt = migrated_runtime()
    account = rt.accounts.disable(reference, reason=reason)
    click.echo(f"disabled account {account.id} ({account.name})")


@accounts.command("enable")
@click.argument("reference")
@handle_errors
def enable(reference: str) -> None:
    """Put an account back into the pool."""
    rt = migrated_runtime()
    account = rt.accounts.enable(reference)
    click.echo(f"enabled account {account.id} ({account.name})")


@accounts.command("rotate-key")
@click.argument("reference")
@click.option("--api-key-env", help="Read the new key from this environment variable instead of stdin.")
@handle_errors
def rotate_key(reference: str, api_key_env: str | None) -> None:
    """Replace an account's API key (read from stdin or --api-key-env)."""
    rt = migrated_runtime()
    account = rt.accounts.rotate_api_key(reference, _read_api_key(api_key_env))
    click.echo(f"rotated the key of account {account.id} ({account.name}); new key {account.api_key_hint}")


@accounts.command("remove")
@click.argument("reference")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def remove(reference: str, yes: bool) -> None:
    """Delete an account and its history."""
    rt = migrated_runtime()
    account = rt.accounts.get(reference)
    if not yes and sys.stdin.isatty():
        click.confirm(f"remove account {account.id} ({account.name})?", abort=True)
    rt.accounts.delete(account.id)
    click.echo(f"removed account {account.id} ({account.name})")
