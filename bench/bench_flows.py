"""delegate_batch (Prefect) beside the library's own batch runner, and the fixed cost of one
delegate flow run beside one library delegation, on the same simulated pool in the same run.

    .venv/bin/python bench/bench_flows.py [--requests 1000] [--concurrency 32] [--rounds 2]

The simulator runs in its own process (no added latency, limits far above the load), so the
figures are the client side's: the pool, the recording of executions, and Prefect's overhead.
Rounds alternate library / flow so that drift on this shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_simulator() -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "claude_pool", "simulate", "--accounts", "3", "--port", "0", "--json",
         "--rpm", "1000000", "--itpm", "1000000000", "--otpm", "100000000", "--exact-headers"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def prepare_environment(sim: dict) -> None:
    home = tempfile.mkdtemp(prefix="claude-pool-bench-")
    os.environ.update(
        CLAUDE_POOL_HOME=home, ENCRYPTION_KEY=os.urandom(32).hex(), ANTHROPIC_BASE_URL=sim["base_url"],
        LOG_FILE=f"{home}/app.log", LOG_LEVEL="WARNING", PREFECT_HOME=f"{home}/prefect",
        PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
    )
    for name in ("DATABASE_URL", "REDIS_URL", "SLACK_BOT_TOKEN", "PREFECT_API_URL"):
        os.environ.pop(name, None)
    from claude_pool_tasks.context import runtime

    rt = runtime()
    rt.db.upgrade()
    for n, key in enumerate(sim["keys"]):
        rt.accounts.register({"organization_id": "bench", "name": f"acct-{n + 1}", "tier": "enterprise",
                              "api_key": key["key"], "requests_per_minute": 1_000_000,
                              "input_tokens_per_minute": 1_000_000_000, "output_tokens_per_minute": 100_000_000})


def questions(n: int, tag: str) -> list[dict]:
    return [{"organization_id": "bench", "message": f"{tag} question {i}", "max_tokens": 64} for i in range(n)]


async def library_batch(n: int, concurrency: int, tag: str) -> float:
    from claude_pool.pool.models import DelegationRequest
    from claude_pool.records.batch import run_batch
    from claude_pool.records.executions import ExecutionStore
    from claude_pool_tasks.context import open_pool, runtime

    requests = [DelegationRequest.model_validate(q) for q in questions(n, tag)]
    async with open_pool(events=False) as pool:
        started = time.perf_counter()
        outcomes = await run_batch(pool, requests, concurrency=concurrency, executions=ExecutionStore(runtime().db))
        elapsed = time.perf_counter() - started
    assert all(o.status == "succeeded" for o in outcomes)
    return n / elapsed


async def flow_batch(n: int, concurrency: int, tag: str) -> float:
    from claude_pool_flows import delegate_batch

    started = time.perf_counter()
    summary = await delegate_batch(requests=questions(n, tag), organization_id="bench", concurrency=concurrency,
                                   chunk_size=max(1, n // 4), parallel_chunks=2)
    elapsed = time.perf_counter() - started  # the whole flow run: start-up, chunks, summary
    assert summary["succeeded"] == n, summary
    return n / elapsed


async def one_library_delegation(i: int) -> float:
    from claude_pool.pool.models import DelegationRequest
    from claude_pool.records.batch import run_batch
    from claude_pool.records.executions import ExecutionStore
    from claude_pool_tasks.context import open_pool, runtime

    started = time.perf_counter()
    async with open_pool(events=False) as pool:
        await run_batch(pool, [DelegationRequest(organization_id="bench", message=f"single {i}", max_tokens=16)],
                        concurrency=1, executions=ExecutionStore(runtime().db))
    return time.perf_counter() - started


async def one_flow_run(i: int) -> float:
    from claude_pool_flows import delegate

    started = time.perf_counter()
    await delegate(organization_id="bench", message=f"single flow {i}", max_tokens=16)
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> str:
    lib_rates, flow_rates = [], []
    await flow_batch(50, args.concurrency, "warm-up")  # starts Prefect's ephemeral server
    for r in range(args.rounds):
        lib_rates.append(await library_batch(args.requests, args.concurrency, f"lib-{r}"))
        flow_rates.append(await flow_batch(args.requests, args.concurrency, f"flow-{r}"))
    lib_single = [await one_library_delegation(i) for i in range(args.singles)]
    flow_single = [await one_flow_run(i) for i in range(args.singles)]
    lib_rate, flow_rate = statistics.median(lib_rates), statistics.median(flow_rates)
    lib_one, flow_one = statistics.median(lib_single), statistics.median(flow_single)
    lines = [
        "# Flows benchmark: delegate_batch and delegate beside the library",
        "",
        f"Command: `.venv/bin/python bench/bench_flows.py --requests {args.requests} --concurrency "
        f"{args.concurrency} --rounds {args.rounds}`  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}; embedded default (SQLite, no Redis), Prefect "
        "ephemeral mode; simulator in its own process, no added latency.",
        "",
        "Every request is recorded as an execution on both sides (the same `run_batch` code); the flow's",
        "time is the whole run, from the call to the returned summary.",
        "",
        "| what | library | flow | flow / library |",
        "|---|---:|---:|---:|",
        f"| batch of {args.requests}, concurrency {args.concurrency} (req/s, median of {args.rounds}) | "
        f"{lib_rate:,.1f} | {flow_rate:,.1f} | {flow_rate / lib_rate:.0%} |",
        f"| one delegation, wall time (ms, median of {args.singles}) | {lib_one * 1000:,.0f} | "
        f"{flow_one * 1000:,.0f} | {flow_one / lib_one:.1f}x |",
        "",
        f"Rounds: library {', '.join(f'{r:,.1f}' for r in lib_rates)}; flow {', '.join(f'{r:,.1f}' for r in flow_rates)} req/s.",
        f"Fixed cost of one delegate flow run over a library delegation: {(flow_one - lib_one) * 1000:,.0f} ms.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--singles", type=int, default=10)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "flows.md")
    arguments = parser.parse_args()
    simulator, described = start_simulator()
    try:
        prepare_environment(described)
        report = asyncio.run(main(arguments))
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    arguments.output.write_text(report)
    print(report)
