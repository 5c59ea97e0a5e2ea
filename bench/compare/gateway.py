"""``python -m bench.compare.gateway`` (``make bench-gateway``): the drop-in Anthropic endpoint beside
LiteLLM's proxy and the simulator called directly, in one run, on one simulator.

    .venv-bench/bin/python -m bench.compare.gateway [--requests 300] [--rate 20]
        [--ttft-ms 0] [--scenario bench/scenarios/1-steady.yaml] [--load-seconds 30] [--parts light,load]

Three targets, the same requests (Anthropic's Messages API wire format, ``x-api-key``):

- **direct**: the simulator itself, the baseline;
- **claude-pool**: ``claude-pool serve`` (embedded store, SQLite in a temporary folder), an account
  per simulator key, ``POST /v1/messages`` with a pool token;
- **LiteLLM**: ``litellm --config`` (from this virtualenv), a model group per part with the keys as
  deployments, ``POST /v1/messages`` with its master key.

Light part: added latency (p50, p99) over direct, time to first byte of a stream, the gateway's CPU
per request. Load part (a scenario's limited organizations, open-loop arrivals above capacity):
goodput and the 429s upstream. The table is printed and written to ``--output``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import aiohttp

from bench.compare.gateway_load import WARM_UP_REQUESTS, LightTimings, LoadCounts, measure_light, run_load
from bench.compare.gateway_paths import (
    ROOT,
    SimKeys,
    Target,
    direct_target,
    pool_command,
    start_litellm,
    start_pool,
    stop_target,
)
from bench.compare.gateway_report import light_rows, light_table, load_table, targets_verdict
from bench.compare.measure import SimProcess
from bench.compare.scenarios import BenchScenario, load_scenarios
from claude_pool.simulator import Scenario

__all__ = ["main"]

LIGHT_KEY_NAME = "light"
#: The light part's organization: limits far above any load here, so only overhead is measured.
LIGHT_LIMITS = {"rpm": 1_000_000, "itpm": 1_000_000_000, "otpm": 1_000_000_000}


def simulator_for(scenario: BenchScenario, ttft_ms: float, tokens_per_second: float) -> dict[str, Any]:
    """The load scenario's organizations (their keys as the scenario derives them), plus one
    unlimited organization for the light part; the latency model given here applies to all."""
    data = Scenario.from_dict(scenario.simulator).to_dict()
    data["organizations"].append({"limits": dict(LIGHT_LIMITS), "keys": [{"name": LIGHT_KEY_NAME}]})
    data["latency"] = {"ttft_ms": ttft_ms, "output_tokens_per_second": tokens_per_second}
    return data


def sim_keys(described: dict[str, Any]) -> SimKeys:
    limits = {o["id"]: o["limits"] for o in described["organizations"]}

    def key(k: dict[str, Any]) -> dict[str, Any]:
        lim = limits[k["org"]]
        # LiteLLM counts one tpm (input + output); Anthropic has ITPM and OTPM: their sum.
        return {
            **k,
            "rpm": lim["rpm"],
            "itpm": lim["itpm"],
            "otpm": lim["otpm"],
            "tpm": lim["itpm"] + lim["otpm"],
        }

    keys = [key(k) for k in described["keys"]]
    light = next(k for k in keys if k["name"] == LIGHT_KEY_NAME)
    return SimKeys(light, [k for k in keys if k["name"] != LIGHT_KEY_NAME])


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def _server_stack(prefix: Path) -> str:
    """What uvicorn's ``loop="auto"`` and ``http="auto"`` pick in that installation."""

    def installed(package: str) -> bool:
        return any(prefix.glob(f"lib/python3*/site-packages/{package}"))

    return f"{'uvloop' if installed('uvloop') else 'asyncio'} + {'httptools' if installed('httptools') else 'h11'}"


def _header(
    args: argparse.Namespace, scenario: BenchScenario, elapsed_s: float, pool_venv: Path
) -> list[str]:
    command = (
        "make bench-gateway"
        if len(sys.argv) == 1
        else " ".join([".venv-bench/bin/python -m bench.compare.gateway", *sys.argv[1:]])
    )
    return [
        "# claude-pool's /v1/messages beside LiteLLM's proxy and the simulator called directly",
        "",
        "Written by `bench/compare/gateway.py` (do not edit by hand). Reproduce with:",
        "",
        f"    {command}",
        "",
        f"Run {datetime.now(UTC).isoformat(timespec='seconds')} on {platform.platform()}, {os.cpu_count()} CPUs "
        f"(shared: compare within one run), in {elapsed_s / 60:.1f} minutes; claude-pool {_version('claude-pool')}, "
        f"litellm {_version('litellm')}, Python {platform.python_version()}. Under uvicorn: claude-pool serve "
        f"{_server_stack(pool_venv)} (`{pool_venv.name}`), LiteLLM's proxy {_server_stack(Path(sys.prefix))}.",
        "",
        "## How it is measured",
        "",
        "- One simulator process; the three targets reach it over loopback; the client (aiohttp, keep-alive) "
        "is this process.",
        f"- **Light part**: {args.requests} messages and {args.requests} streams (`stream: true`) per target, "
        f"arriving {args.rate:g} a second (open loop, evenly spaced: a few in flight at once, the gateway never "
        f"saturated), in rounds of {args.batch} that interleave the targets in a rotating order (after "
        f"{WARM_UP_REQUESTS} warm-up requests each); simulator latency: time to first token "
        f"{args.ttft_ms:g} ms, {args.tokens_per_second:g} tokens/s (0: at once); an organization without "
        "practical limits.",
        "- **added p50 / p99**: the target's percentile minus the direct percentile of the same run (not per "
        "request). **TTFB**: from sending to the first byte of the stream's body. **stream end**: to its last "
        "byte. **gateway CPU**: user + system CPU of the gateway's process (and children) from /proc during "
        "its own timed batches, divided by their requests (messages and streams).",
        f"- **Load part**: `{os.path.relpath(scenario.path, ROOT) if scenario.path else scenario.name}` "
        f"({scenario.title}), {scenario.duration_s:g} s of open-loop arrivals, each with a {scenario.budget_s:g} s "
        "budget and no client retries; one target at a time, each after every organization's request bucket "
        "was drained and the counters reset. direct round-robins over the keys. **goodput**: what the "
        "simulator served during the load ÷ what the limits allow in it; **upstream 429s**: the simulator's "
        "own count of rate-limit refusals.",
        "- The machine has 2 cores and others work on it: figures are indicative; compare within a run.",
    ]


async def _start_targets(
    session: aiohttp.ClientSession,
    sim: SimProcess,
    keys: SimKeys,
    folder: Path,
    args: argparse.Namespace,
    budget_s: float,
) -> list[Target]:
    started = time.monotonic()
    pool, litellm = await asyncio.gather(
        start_pool(session, sim.base_url, keys, folder, args.pool_venv),
        start_litellm(session, sim.base_url, keys, folder, budget_s),
    )
    targets = [direct_target(sim.base_url, keys), pool, litellm]
    print(f"targets ready in {time.monotonic() - started:.0f} s", flush=True)
    for t in targets:
        print(
            f"    {t.name:<28} {'not run: ' + t.skipped if t.skipped else t.base_url + '  ' + t.note}",
            flush=True,
        )
    return targets


async def _measure(
    args: argparse.Namespace, scenario: BenchScenario, folder: Path
) -> tuple[list[Target], dict[str, LightTimings], dict[str, LoadCounts]]:
    parts = {p.strip() for p in args.parts.split(",")}
    sim = await SimProcess.start(simulator_for(scenario, args.ttft_ms, args.tokens_per_second))
    targets: list[Target] = []
    sessions: dict[str, aiohttp.ClientSession] = {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as control:
            keys = sim_keys(sim.described)
            targets = await _start_targets(control, sim, keys, folder, args, scenario.budget_s)
            measured = [t for t in targets if t.skipped is None]
            # A session (a connection pool) per target: none waits for another's connections.
            sessions = {
                t.name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) for t in measured
            }
            light: dict[str, LightTimings] = {}
            if "light" in parts:
                light = await measure_light(
                    sessions, measured, args.requests, args.rate, args.batch, args.max_tokens
                )
                print("light part done", flush=True)
            loads: dict[str, LoadCounts] = {}
            for t in measured if "load" in parts else []:
                loads[t.name] = await run_load(sessions[t.name], sim, keys, t, scenario)
                print(f"load part done: {t.name}", flush=True)
            return targets, light, loads
    finally:
        for s in sessions.values():
            await s.close()
        await asyncio.gather(*(stop_target(t) for t in targets))
        await sim.stop()


async def main(args: argparse.Namespace) -> int:
    unknown = {p.strip() for p in args.parts.split(",")} - {"light", "load"}
    if unknown:
        raise SystemExit(f"--parts: unknown {sorted(unknown)}; known: light, load")
    scenario = load_scenarios([args.scenario.absolute()])[0]
    if args.load_seconds:
        scenario = scenario.with_duration(args.load_seconds)
    if scenario.faults:
        raise SystemExit(f"{args.scenario}: scenarios with faults are not supported here")
    args.pool_venv = pool_command(args.pool_venv).parent.parent
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as folder:
        targets, light, loads = await _measure(args, scenario, Path(folder))
    measured = [t for t in targets if t.skipped is None]
    skipped = [t for t in targets if t.skipped is not None]
    lines = _header(args, scenario, time.monotonic() - started, args.pool_venv)
    if light:
        rows = light_rows(measured, light)
        lines += ["", "## Light load: added latency, time to first byte, CPU", "", light_table(rows, skipped)]
        verdict = targets_verdict(rows, targets[1].name, targets[2].name)
        if verdict:
            lines += ["", "Issue 15's targets for claude-pool's `/v1/messages` (this run):", "", *verdict]
    if loads:
        lines += ["", f"## Under limits: {scenario.title}", "", load_table(measured, loads, skipped)]
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=300, help="timed messages (and as many streams) per target"
    )
    parser.add_argument(
        "--rate", type=float, default=20.0, help="requests a second in the light part (open loop)"
    )
    parser.add_argument("--batch", type=int, default=50, help="requests per target per round (interleaving)")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of the light part's requests")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="the simulator's time to first token")
    parser.add_argument("--tokens-per-second", type=float, default=0.0, help="the simulator's output pace")
    parser.add_argument(
        "--scenario",
        type=Path,
        default=ROOT / "bench" / "scenarios" / "1-steady.yaml",
        help="the load part's scenario (its limits, load factor, budget)",
    )
    parser.add_argument(
        "--load-seconds", type=float, default=30.0, help="the load part's duration (0: the file's)"
    )
    parser.add_argument("--parts", default="light,load", help="light, load or both (comma-separated)")
    parser.add_argument(
        "--pool-venv",
        type=Path,
        default=None,
        help="virtualenv whose claude-pool serves (default: .venv, else this interpreter's)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "gateway.md")
    return parser


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_parser().parse_args())))
