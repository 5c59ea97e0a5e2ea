"""The ``claude-pool`` command line. Each command group lives in its own module."""

from __future__ import annotations

import importlib
from typing import Any

import click

__all__ = ["cli", "main"]

# name -> "module:attribute"; loaded only when used, so `claude-pool --help` stays quick.
_COMMANDS: dict[str, str] = {
    "init": "claude_pool.cli.init_cmd:init",
    "db": "claude_pool.cli.db_cmd:db",
    "keys": "claude_pool.cli.keys_cmd:keys",
    "accounts": "claude_pool.cli.accounts_cmd:accounts",
    "simulate": "claude_pool.cli.simulate_cmd:simulate",
    "serve-flows": "claude_pool.cli.flows_cmd:serve_flows",
    "demo": "claude_pool.cli.demo_cmd:demo",
    "executions": "claude_pool.cli.executions_cmd:executions",
    "serve": "claude_pool.cli.serve_cmd:serve",
    "alerts": "claude_pool.cli.alerts_cmd:alerts",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS:
            module_name, attr = _COMMANDS[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module_name), attr)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """claude-pool: run Claude at volume across many Anthropic accounts."""


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="claude-pool")
