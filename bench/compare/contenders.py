"""Who competes, and how each is set up around its own simulator before its workers start."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.compare.processes import run_to_end, set_environment, start_child
from bench.compare.scenarios import BenchScenario

__all__ = [
    "CONTENDERS", "KNOWN", "Contender", "Preparation", "contenders_named", "litellm_available", "prepare",
]

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Contender:
    name: str
    client: str  # pool | flow | litellm | naive | bare
    min_processes: int = 1
    redis: bool = False
    strategy: str | None = None  # LiteLLM's routing_strategy
    note: str = ""
    #: claude-pool's configuration overrides (``CLAUDE_POOL__...`` variables), as a user would set them.
    config_env: tuple[tuple[str, str], ...] = ()

    def processes(self, scenario: BenchScenario) -> int:
        return 1 if self.client in ("flow", "bare") else max(scenario.workers, self.min_processes)


CONTENDERS: tuple[Contender, ...] = (
    Contender("claude-pool", "pool", note="library, embedded store (SQLite), least_loaded"),
    Contender("claude-pool Redis x3", "pool", min_processes=3, redis=True, note="library in 3 processes on Redis"),
    Contender("claude-pool flow", "flow", note="delegate_batch flow, Prefect ephemeral mode (steady only)"),
    Contender(
        "LiteLLM usage-v2 Redis x3", "litellm", min_processes=3, redis=True, strategy="usage-based-routing-v2",
        note="Router, usage-based-routing-v2, 3 processes sharing Redis",
    ),
    Contender("LiteLLM shuffle", "litellm", strategy="simple-shuffle", note="Router, default simple-shuffle"),
    Contender("naive round-robin", "naive", note="anthropic clients, max_retries=2, one per key"),
)
#: Only in scenarios that name them (``contenders:``): the process counts of the overload scenario.
BY_PROCESS_COUNT: tuple[Contender, ...] = (
    Contender("claude-pool Redis x1", "pool", min_processes=1, redis=True, note="library in 1 process on Redis"),
    Contender("claude-pool Redis x4", "pool", min_processes=4, redis=True, note="library in 4 processes on Redis"),
    Contender("claude-pool Redis x8", "pool", min_processes=8, redis=True, note="library in 8 processes on Redis"),
    Contender(
        "LiteLLM usage-v2 Redis x4", "litellm", min_processes=4, redis=True, strategy="usage-based-routing-v2",
        note="Router, usage-based-routing-v2, 4 processes sharing Redis",
    ),
)
#: Only in scenarios that name them: the library with a standing queue kept to 2 s instead of
#: 0.1 s, what a user who would rather wait than be refused configures (see the README's "Under
#: overload").
PATIENT = Contender(
    "claude-pool queue 2 s", "pool", config_env=(("CLAUDE_POOL__admission__targetQueueSeconds", "2"),),
    note="library, embedded store, admission.targetQueueSeconds 2 (default 0.1)",
)
#: Every contender a scenario may name, in the order of the tables.
KNOWN: tuple[Contender, ...] = (
    CONTENDERS[0], PATIENT, CONTENDERS[1], *BY_PROCESS_COUNT[:3], CONTENDERS[2], CONTENDERS[3],
    BY_PROCESS_COUNT[3], *CONTENDERS[4:],
)
BARE = Contender("bare client", "bare", note="one key, no limits, no retries, the same arrivals: upstream's latency")


def contenders_named(names: tuple[str, ...] | None, where: object) -> tuple[Contender, ...]:
    """The contenders a scenario names (in the tables' order), or the default set for None."""
    if names is None:
        return CONTENDERS
    by_name = {c.name: c for c in KNOWN}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"{where}: contenders: unknown {unknown}; known: {list(by_name)}")
    return tuple(c for c in KNOWN if c.name in names)


def litellm_available() -> str | None:
    """LiteLLM's version, or None when it is not installed in this interpreter."""
    try:
        from importlib.metadata import version

        return version("litellm")
    except Exception:
        return None


@dataclass
class Preparation:
    env: dict[str, str]
    keys: list[dict[str, Any]]
    redis_prefix: str
    cleanups: list[Any]


def _keys(described: dict[str, Any]) -> list[dict[str, Any]]:
    orgs = {o["id"]: o["limits"] for o in described["organizations"]}
    return [
        {
            "name": k["name"],
            "key": k["key"],
            "org": k["org"],
            "rpm": orgs[k["org"]]["rpm"],
            # LiteLLM counts one tpm (input + output); Anthropic has ITPM and OTPM: their sum.
            "tpm": orgs[k["org"]]["itpm"] + orgs[k["org"]]["otpm"],
            "itpm": orgs[k["org"]]["itpm"],
            "otpm": orgs[k["org"]]["otpm"],
        }
        for k in described["keys"]
    ]


def _pool_environment(home: Path, base_url: str, contender: Contender, prefix: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "SLACK_BOT_TOKEN", "PREFECT_API_URL")
    }
    env.update(
        CLAUDE_POOL_HOME=str(home), DATABASE_URL=f"sqlite:///{home / 'claude-pool.db'}",
        ENCRYPTION_KEY=os.urandom(32).hex(), ANTHROPIC_BASE_URL=base_url, LOG_LEVEL="WARNING",
        LOG_FILE=str(home / "app.log"), CLAUDE_POOL_CONFIG=str(ROOT / "config" / "multi-account.json"),
        PREFECT_HOME=str(home / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING", CLAUDE_POOL_REDIS_PREFIX=prefix,
        # Prefect waits 20 s for its ephemeral server by default: too little on a busy 2-core machine.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    if contender.redis:
        env["REDIS_URL"] = REDIS_URL
    env.update(contender.config_env)
    return env


def _register_in_child(env: dict[str, str], keys: list[dict[str, Any]], conn: Connection) -> None:
    set_environment(env)
    try:
        _register(env, keys)
    except Exception as exc:
        conn.send(("error", f"registering the accounts: {type(exc).__name__}: {exc}"))
        raise
    conn.send(("done",))


def _register(env: dict[str, str], keys: list[dict[str, Any]]) -> None:
    """Every key as an account; keys of one organization share its bucket (``capacity_group``)."""
    from claude_pool.core.settings import Settings
    from claude_pool.runtime import Runtime

    per_org: dict[str, int] = {}
    for k in keys:
        per_org[k["org"]] = per_org.get(k["org"], 0) + 1
    runtime = Runtime.from_env(Settings.from_env(env))
    try:
        runtime.db.upgrade()
        for k in keys:
            runtime.accounts.register({
                "organization_id": "bench", "name": k["name"], "tier": "pro", "api_key": k["key"],
                "requests_per_minute": k["rpm"], "input_tokens_per_minute": k["itpm"],
                "output_tokens_per_minute": k["otpm"],
                "capacity_group": k["org"] if per_org[k["org"]] > 1 else None,
            })
    finally:
        runtime.close()


async def _drop_redis_keys(prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        found = [key async for key in client.scan_iter(match=f"*{prefix}*", count=1000)]
        for i in range(0, len(found), 500):
            await client.delete(*found[i : i + 500])
    finally:
        await client.aclose()


async def prepare(
    contender: Contender, described: dict[str, Any], base_url: str, folder: Path, prefix: str
) -> Preparation:
    keys = _keys(described)
    cleanups: list[Any] = []
    env = dict(os.environ)
    if contender.client in ("pool", "flow"):
        home = folder / "home"
        home.mkdir(parents=True)
        env = _pool_environment(home, base_url, contender, prefix)
        # In a child of its own: Alembic's context is process-global, and the child has the
        # contender's environment (its database, its encryption key).
        await run_to_end(start_child(_register_in_child, env, keys), 120)
        cleanups.append(lambda: shutil.rmtree(home, ignore_errors=True))
    if contender.redis:
        cleanups.append(lambda: _drop_redis_keys(prefix))
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return Preparation(env, keys, prefix, cleanups)

