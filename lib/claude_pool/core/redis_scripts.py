"""The one Lua loader of the Redis stores (capacity, breaker).

Each store keeps its scripts in ``<package>/lua/``: one file per operation, named after the store
method it serves, and one prelude (``_<store>_lib.lua``) of helpers shared by them. Redis scripts
cannot include one another, so the prelude is prepended to every script when it is registered.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

__all__ = ["load_lua", "register_scripts"]


def load_lua(package: str, name: str, *, prelude: str) -> str:
    """The source of ``<package>/lua/<name>.lua`` with ``<package>/lua/<prelude>.lua`` before it."""
    folder = resources.files(package) / "lua"
    head = (folder / f"{prelude}.lua").read_text(encoding="utf-8")
    return head + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")


def register_scripts(
    client: aioredis.Redis, package: str, names: Iterable[str], *, prelude: str
) -> dict[str, AsyncScript]:
    """Every named script of ``package``, registered on ``client``. Registering only hashes the
    source: a call runs EVALSHA and loads the script itself on NOSCRIPT (a restarted server), so
    this costs no round trip."""
    return {name: client.register_script(load_lua(package, name, prelude=prelude)) for name in names}
