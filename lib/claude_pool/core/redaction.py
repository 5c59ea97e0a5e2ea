"""Mask anything shaped like an Anthropic key before text leaves the process.

Upstream error messages, exception chains and log lines can echo a key back (a proxy quoting the
``Authorization`` header, a user pasting a key into a prompt). Every path that turns foreign text
into our messages, logs or events runs it through :func:`redact` first.
"""

from __future__ import annotations

import re

__all__ = ["KEY_PATTERN", "redact"]

# Eight characters after the prefix is already more than any word a message would contain, and
# short enough to catch truncated keys; admin keys (``sk-ant-admin01-...``) match too.
KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}")


def _mask(match: re.Match[str]) -> str:
    # The last four characters are what operators use to tell keys apart (the account hint).
    return f"sk-ant-…{match.group(0)[-4:]}"


def redact(text: str) -> str:
    """``text`` with every key-shaped substring replaced by ``sk-ant-…<last4>``."""
    if "sk-ant-" not in text:
        return text
    return KEY_PATTERN.sub(_mask, text)
