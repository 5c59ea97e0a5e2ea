"""The ``claude-pool`` command line. Each command group lives in its own module.

The top of the library: may import any subpackage. Commands that need Prefect (``demo``,
``serve-flows``) are not here: the flows package contributes them through the
``claude_pool.commands`` entry point, so the library never imports Prefect or the flows.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

import click

__all__ = ["COMMANDS_ENTRY_POINT", "cli", "main"]

# name -> "module:attribute"; loaded only when used, so `claude-pool --help` stays quick.
_COMMANDS: dict[str, str] = {
    "init": "claude_pool.cli.init_cmd:init",
    "db": "claude_pool.cli.db_cmd:db",
    "keys": "claude_pool.cli.keys_cmd:keys",
    "accounts": "claude_pool.cli.accounts_cmd:accounts",
    "simulate": "claude_pool.cli.simulate_cmd:simulate",
    "executions": "claude_pool.cli.executions_cmd:executions",
    "serve": "claude_pool.cli.serve_cmd:serve",
    "alerts": "claude_pool.cli.alerts_cmd:alerts",
}


#: The entry-point group through which installed packages contribute commands.
COMMANDS_ENTRY_POINT = "claude_pool.commands"


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        contributed = {ep.name for ep in entry_points(group=COMMANDS_ENTRY_POINT)}
        return sorted(set(super().list_commands(ctx)) | set(_COMMANDS) | contributed)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS:
            module_name, attr = _COMMANDS[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module_name), attr)
            return command
        for ep in entry_points(group=COMMANDS_ENTRY_POINT, name=cmd_name):
            loaded: click.Command = ep.load()
            return loaded
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """claude-pool: run Claude at volume across many Anthropic accounts."""


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="claude-pool")
