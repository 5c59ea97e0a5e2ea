"""The three ways to reach the simulator that ``bench.compare.gateway`` measures, each started here:
the simulator itself (called directly), ``claude-pool serve`` and LiteLLM's proxy in front of it.

Both gateways run as subprocesses from their own installed command (``claude-pool``, ``litellm``),
log only warnings (no access log line per request), and are stopped by their process id. A
gateway that cannot start, or a ``claude-pool serve`` without ``POST /v1/messages`` yet, gives a
path that is skipped with the reason, so the other paths are still measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

__all__ = [
    "ANTHROPIC_VERSION",
    "LIGHT_MODEL",
    "LOAD_MODEL",
    "SimKeys",
    "Target",
    "direct_target",
    "start_litellm",
    "start_pool",
    "stop_target",
]

ROOT = Path(__file__).resolve().parents[2]
ANTHROPIC_VERSION = "2023-06-01"
#: The model each part asks for: LiteLLM routes on it (one model group each); the simulator and
#: claude-pool pass it through. Both are in LiteLLM's price map, so it logs no cost-lookup error.
LIGHT_MODEL = "claude-sonnet-5-5"
LOAD_MODEL = "claude-haiku-5-5"
LIGHT_ORG, LOAD_ORG = "bench-light", "bench-load"
READY_TIMEOUT_S = 240.0  # imports on a busy 2-core machine: LiteLLM's proxy takes 5 to 60 s
#: Inherited settings that would point a gateway at a shared database, Redis or Slack.
_DROPPED_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "SLACK_BOT_TOKEN",
    "PREFECT_API_URL",
    "CLAUDE_POOL_API_TOKENS",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
)


@dataclass(frozen=True)
class SimKeys:
    """The simulator's keys for each part: one org without practical limits (latency), the scenario's
    limited orgs (load), each key with its org's limits."""

    light: dict[str, Any]
    load: list[dict[str, Any]]


@dataclass
class Target:
    """One way to the simulator: where to send, with which headers; the process whose CPU counts."""

    name: str
    base_url: str
    light_headers: dict[str, str]
    #: The load part's headers, used round-robin (direct: one per key; a gateway: its token).
    load_headers: list[dict[str, str]]
    process: asyncio.subprocess.Process | None = None
    skipped: str | None = None
    note: str = ""
    log: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def _headers(key: str) -> dict[str, str]:
    # x-api-key: what the Anthropic SDKs send for api_key=, on every path.
    return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}


def direct_target(base_url: str, keys: SimKeys) -> Target:
    return Target(
        "direct (simulator)",
        base_url,
        _headers(keys.light["key"]),
        [_headers(k["key"]) for k in keys.load],
        note="the simulator called directly: the baseline",
    )


def _skipped(name: str, reason: str) -> Target:
    return Target(name, "", {}, [], skipped=reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update(extra)
    return env


def _tail(log: Path | None, lines: int = 6) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:])


async def _spawn(argv: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=str(log.parent),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # its own group: stopping it never touches the harness
        )


async def _wait_ready(session: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process) -> None:
    """Until ``url`` answers 200; raises if the process ends first or the time runs out."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"exited with code {process.returncode} before it was ready")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 0.25)
    raise TimeoutError(f"not ready in {READY_TIMEOUT_S:.0f} s")


async def stop_target(target: Target) -> None:
    """SIGTERM, then SIGKILL after 10 s, to the gateway's process (by its id) and its own group."""
    process = target.process
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        await process.wait()


# ---- claude-pool serve ----------------------------------------------------------------------------


def pool_command(venv: Path | None) -> Path:
    """``claude-pool`` of the project's own virtualenv (as ``pip install claude-pool`` gives it:
    uvicorn on asyncio), else of the interpreter running the benchmark."""
    if venv is not None:  # asked for: that one or none
        if not (venv / "bin" / "claude-pool").exists():
            raise FileNotFoundError(f"no claude-pool command in {venv}")
        return (venv / "bin" / "claude-pool").absolute()  # the gateway runs in a folder of its own
    for candidate in (ROOT / ".venv", Path(sys.prefix)):
        if (candidate / "bin" / "claude-pool").exists():
            return (candidate / "bin" / "claude-pool").absolute()
    raise FileNotFoundError("no claude-pool command: run `make install`")


async def _run(argv: list[str], env: dict[str, str], log: Path, timeout: float) -> None:
    process = await _spawn(argv, env, log)
    try:
        code = await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if code != 0:
        raise RuntimeError(f"`{' '.join(argv[1:])}` exited with code {code}: {_tail(log)}")


async def _register(session: aiohttp.ClientSession, base_url: str, admin: str, keys: SimKeys) -> None:
    """Every simulator key as an account of its part's organization, through the admin API."""
    per_org: dict[str, int] = {}
    for k in keys.load:
        per_org[k["org"]] = per_org.get(k["org"], 0) + 1
    accounts = [(LIGHT_ORG, keys.light, None)] + [
        (LOAD_ORG, k, k["org"] if per_org[k["org"]] > 1 else None) for k in keys.load
    ]
    for organization, k, group in accounts:
        body = {
            "organizationId": organization,
            "name": k["name"],
            "apiKey": k["key"],
            "tier": "pro",
            "requestsPerMinute": k["rpm"],
            "inputTokensPerMinute": k["itpm"],
            "outputTokensPerMinute": k["otpm"],
        }
        if group is not None:
            body["capacityGroup"] = group  # keys of one organization share its bucket
        async with session.post(
            f"{base_url}/api/v1/admin/claude-accounts",
            json=body,
            headers={"Authorization": f"Bearer {admin}"},
        ) as resp:
            if resp.status != 201:
                raise RuntimeError(f"registering {k['name']}: HTTP {resp.status} {(await resp.text())[:300]}")


async def _probe_messages(session: aiohttp.ClientSession, target: Target) -> str | None:
    """None when ``POST /v1/messages`` answers; else why the path is skipped."""
    body = {"model": LIGHT_MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "probe"}]}
    async with session.post(
        f"{target.base_url}/v1/messages", json=body, headers=target.light_headers
    ) as resp:
        text = await resp.text()
        if resp.status in (404, 405):
            return (
                f"claude-pool serve has no POST /v1/messages yet (it answered {resp.status}): "
                "the gateway route of issue 15 is not in this tree"
            )
        if resp.status != 200:
            return f"POST /v1/messages answered {resp.status}: {text[:300]}"
    return None


async def start_pool(
    session: aiohttp.ClientSession, sim_url: str, keys: SimKeys, folder: Path, venv: Path | None
) -> Target:
    """``claude-pool serve`` on the embedded store (SQLite in ``folder``), accounts registered for the
    simulator's keys, ``ANTHROPIC_BASE_URL`` at the simulator; tokens scoped to each part's org."""
    name = "claude-pool /v1/messages"
    home = folder / "pool"
    home.mkdir(parents=True)
    admin, light, load = (secrets.token_urlsafe(24) for _ in range(3))
    env = _environment(
        CLAUDE_POOL_HOME=str(home),
        DATABASE_URL=f"sqlite:///{home / 'claude-pool.db'}",
        ENCRYPTION_KEY=os.urandom(32).hex(),
        ANTHROPIC_BASE_URL=sim_url,
        LOG_LEVEL="WARNING",
        LOG_FILE=str(home / "app.log"),
        CLAUDE_POOL_CONFIG=str(ROOT / "config" / "multi-account.json"),
        CLAUDE_POOL_API_TOKENS=f"{admin}=*;{light}={LIGHT_ORG};{load}={LOAD_ORG}",
    )
    log = home / "serve.log"
    try:
        command = pool_command(venv)
        await _run([str(command), "db", "upgrade"], env, log, READY_TIMEOUT_S)
        port = _free_port()
        process = await _spawn(
            [str(command), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"], env, log
        )
    except Exception as exc:
        return _skipped(name, f"claude-pool serve did not start: {type(exc).__name__}: {exc}")
    target = Target(
        name,
        f"http://127.0.0.1:{port}",
        _headers(light),
        [_headers(load)],
        process,
        log=log,
        note=f"`{command.parent.parent.name}/bin/claude-pool serve`, embedded store (SQLite)",
    )
    try:
        await _wait_ready(session, f"{target.base_url}/health", process)
        await _register(session, target.base_url, admin, keys)
        target.skipped = await _probe_messages(session, target)
    except Exception as exc:
        target.skipped = f"claude-pool serve: {type(exc).__name__}: {exc} {_tail(log)}".strip()
    return target


# ---- LiteLLM's proxy ------------------------------------------------------------------------------


def litellm_config(sim_url: str, keys: SimKeys, master_key: str, budget_s: float) -> dict[str, Any]:
    """Each part a model group; each load key a deployment with its limits, routed as the Router of
    ``bench.compare`` is (simple-shuffle, 3 retries, 3 allowed fails, 30 s cool-down, the budget)."""

    def deployment(model: str, k: dict[str, Any]) -> dict[str, Any]:
        return {
            "model_name": model,
            "litellm_params": {
                "model": f"anthropic/{model}",
                "api_key": k["key"],
                "api_base": sim_url,
                "rpm": k["rpm"],
                "tpm": k["tpm"],
            },
        }

    return {
        "model_list": [deployment(LIGHT_MODEL, keys.light)] + [deployment(LOAD_MODEL, k) for k in keys.load],
        "router_settings": {
            "routing_strategy": "simple-shuffle",
            "num_retries": 3,
            "allowed_fails": 3,
            "cooldown_time": 30,
            "timeout": budget_s,
        },
        "litellm_settings": {"telemetry": False, "suppress_debug_info": True},
        "general_settings": {"master_key": master_key},
    }


async def start_litellm(
    session: aiohttp.ClientSession, sim_url: str, keys: SimKeys, folder: Path, budget_s: float
) -> Target:
    """``litellm --config`` (one worker, its default) serving Anthropic's ``/v1/messages``."""
    name = "LiteLLM proxy /v1/messages"
    command = Path(sys.executable).parent / "litellm"
    if not command.exists():
        return _skipped(
            name,
            "LiteLLM's proxy is not installed here: run it from .venv-bench (make .venv-bench/.installed)",
        )
    home = folder / "litellm"
    home.mkdir(parents=True)
    master_key = "sk-" + secrets.token_urlsafe(24)  # LiteLLM wants its keys to start with sk-
    config = home / "config.yaml"
    config.write_text(yaml.safe_dump(litellm_config(sim_url, keys, master_key, budget_s)), encoding="utf-8")
    port = _free_port()
    env = _environment(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="WARNING", LITELLM_TELEMETRY="False")
    log = home / "proxy.log"
    process = await _spawn(
        [str(command), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)], env, log
    )
    target = Target(
        name,
        f"http://127.0.0.1:{port}",
        _headers(master_key),
        [_headers(master_key)],
        process,
        log=log,
        note="`litellm --config` (1 worker), master key, no database",
    )
    try:
        await _wait_ready(session, f"{target.base_url}/health/liveliness", process)
    except Exception as exc:
        target.skipped = f"LiteLLM's proxy did not start: {type(exc).__name__}: {exc} {_tail(log)}".strip()
    return target
