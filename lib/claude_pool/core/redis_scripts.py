"""The one Lua loader of the Redis stores (capacity, breaker).

Each store keeps its scripts in ``<package>/lua/``: one file per operation, named after the store
method it serves, and one prelude (``_<store>_lib.lua``) of helpers shared by them. Redis scripts
cannot include one another, so the prelude is prepended to every script when it is registered, after
the one helper every store shares (:data:`CLOCK_LUA`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from claude_pool.core.backend_errors import redis_errors

__all__ = ["CLOCK_LUA", "StoreScripts", "load_lua", "register_scripts"]


# The Lua half of the time every script gets in ARGV[1] (see StoreScripts), first in every script of
# every store: the caller's clock in tests (ARGV[1] not empty), else the server's, which every worker
# shares: they then agree on when a timeout has elapsed or a lease expired.
CLOCK_LUA = """\
local function clock(arg)
  if arg ~= nil and arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""


def load_lua(package: str, name: str, *, prelude: str) -> str:
    """The source of ``<package>/lua/<name>.lua`` with :data:`CLOCK_LUA` and
    ``<package>/lua/<prelude>.lua`` before it."""
    folder = resources.files(package) / "lua"
    head = (folder / f"{prelude}.lua").read_text(encoding="utf-8")
    return CLOCK_LUA + "\n" + head + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")


def register_scripts(
    client: aioredis.Redis, package: str, names: Iterable[str], *, prelude: str
) -> dict[str, AsyncScript]:
    """Every named script of ``package``, registered on ``client``. Registering only hashes the
    source: a call runs EVALSHA and loads the script itself on NOSCRIPT (a restarted server), so
    this costs no round trip."""
    return {name: client.register_script(load_lua(package, name, prelude=prelude)) for name in names}


class StoreScripts:
    """The scripts of one Redis store on its client: every call is one EVALSHA, its failures
    :class:`BackendUnavailable` (``<subject> <operation>``).

    Time comes from the server (``TIME`` inside the scripts) so that workers on different machines
    agree; a ``clock`` may be injected for tests, and is then sent in ARGV[1] instead ('' otherwise).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        store: str,
        names: Iterable[str],
        *,
        clock: Callable[[], float] | None = None,
        owns_client: bool = False,
    ) -> None:
        """``store`` names the package (``claude_pool.<store>``, its prelude ``_<store>_lib``) and
        the subject of error messages."""
        self.client = client
        self.clock = clock
        self._subject = store
        self._owns_client = owns_client
        self._scripts = register_scripts(client, f"claude_pool.{store}", names, prelude=f"_{store}_lib")

    def _now_arg(self) -> str:
        return "" if self.clock is None else repr(float(self.clock()))

    async def call(self, operation: str, keys: list[str], args: list[Any]) -> Any:
        """Run the script named ``operation``: ARGV is the time, then ``args``."""
        with redis_errors(f"{self._subject} {operation}"):
            return await self._scripts[operation](keys=keys, args=[self._now_arg(), *args])

    async def call_many(self, calls: Sequence[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Several scripts in one round trip, in order: a pipeline of EVALSHAs, not a transaction
        (each script is atomic on its own, as with :meth:`call`). A script the server does not know
        (it restarted) is run again on its own by :meth:`call`, which loads it; any other failure
        raises, after the scripts before it ran."""
        operation = "+".join(name for name, _, _ in calls)
        with redis_errors(f"{self._subject} {operation}"):
            async with self.client.pipeline(transaction=False) as pipe:
                for name, keys, args in calls:
                    pipe.evalsha(self._scripts[name].sha, len(keys), *keys, self._now_arg(), *args)
                results = list(await pipe.execute(raise_on_error=False))
        for n, (result, (name, keys, args)) in enumerate(zip(results, calls, strict=True)):
            if isinstance(result, NoScriptError):
                results[n] = await self.call(name, keys, args)
            elif isinstance(result, Exception):
                with redis_errors(f"{self._subject} {name}"):
                    raise result
        return results

    async def now(self) -> float:
        """The time the scripts would read (for steps outside a script); a round trip unless a
        clock is injected."""
        if self.clock is not None:
            return float(self.clock())
        seconds, micros = await self.client.time()
        return seconds + micros / 1e6

    async def aclose(self) -> None:
        """Close the client if the store opened it (``from_url``); a client handed in is the caller's."""
        if self._owns_client:
            with redis_errors(f"{self._subject} aclose"):
                await self.client.aclose()
