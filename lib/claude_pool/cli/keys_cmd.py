"""``claude-pool keys``: make an encryption key, re-encrypt every account under a new one."""

from __future__ import annotations

import click

from claude_pool.cli.common import handle_errors, migrated_runtime
from claude_pool.core.crypto import generate_key

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Encryption keys for the stored API keys."""


@keys.command("generate")
def generate() -> None:
    """Print a new ENCRYPTION_KEY (64 hex characters = 32 random bytes)."""
    click.echo(generate_key())


@keys.command("rotate")
@handle_errors
def rotate() -> None:
    """Re-encrypt every account under ENCRYPTION_KEY.

    Set ENCRYPTION_KEY to the new key and ENCRYPTION_KEY_PREVIOUS to the old one, run this, then
    drop ENCRYPTION_KEY_PREVIOUS.
    """
    rt = migrated_runtime()
    count = rt.accounts.reencrypt_all()
    click.echo(f"re-encrypted {count} account key(s) under key id {rt.keyring.current_key_id}")
    if rt.settings.encryption_key_previous is not None:
        click.echo("every key now opens with ENCRYPTION_KEY alone: ENCRYPTION_KEY_PREVIOUS can be removed")
