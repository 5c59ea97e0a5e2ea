"""One client process of one contender: ``python -m bench.compare.worker CONFIG.json``.

Protocol on stdin/stdout, one line each: the worker sets its client up and prints ``READY``; it
reads ``GO <epoch>``, offers its share of the requests at their times from that epoch (open loop,
each with the scenario's time budget), prints ``RESULT <json>``, and exits on ``EXIT`` or end of
input. The delegate_batch flow variant hands all its requests to one flow run at ``GO`` instead.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.compare.clients import Client, make_client

#: At most this many requests in flight per worker; an arrival beyond it fails as "overflow".
MAX_IN_FLIGHT = 512


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _read_line() -> str:
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


async def open_loop(client: Client, cfg: dict[str, Any], start: float) -> dict[str, Any]:
    budget = float(cfg["budget_s"])
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    in_flight = 0

    async def one(index: int, due: float) -> None:
        nonlocal in_flight
        in_flight += 1
        sent = time.time()
        try:
            async with asyncio.timeout(max(due + budget - sent, 0.01)):
                await client.call(index, due + budget)
            latencies.append(time.time() - sent)
        except TimeoutError:
            errors["budget exceeded"] += 1
        except Exception as exc:  # every failure the caller sees is a figure, never a crash
            errors[type(exc).__name__] += 1
        finally:
            in_flight -= 1

    tasks = []
    for index, offset in zip(cfg["indices"], cfg["offsets"], strict=True):
        due = start + float(offset)
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight >= MAX_IN_FLIGHT:
            errors["overflow"] += 1
            continue
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    return {"offered": len(cfg["indices"]), "ok": len(latencies), "latencies": latencies, "errors": dict(errors)}


async def flow_batch(cfg: dict[str, Any]) -> dict[str, Any]:
    """All requests through one ``delegate_batch`` run; latencies from the executions it recorded."""
    from sqlmodel import select

    from claude_pool.storage import OrchestratorExecution
    from claude_pool_flows import delegate_batch
    from claude_pool_tasks.context import runtime

    requests = [{"message": f"Bench question {i}: say something short."} for i in cfg["indices"]]
    summary = await delegate_batch(
        requests=requests, organization_id="bench", max_tokens=int(cfg["max_tokens"]),
        concurrency=32, chunk_size=max(1, len(requests) // 4), parallel_chunks=2,
        max_wait_seconds=float(cfg["budget_s"]),
    )
    with runtime().db.session() as session:
        rows = list(session.exec(select(OrchestratorExecution)))
    latencies = [r.latency_ms / 1000 for r in rows if r.status == "succeeded" and r.latency_ms is not None]
    errors = {str(k): int(v) for k, v in (summary.get("errors") or {}).items()}
    if not errors and summary.get("failed"):
        errors = {"failed": int(summary["failed"])}
    return {"offered": len(requests), "ok": int(summary["succeeded"]), "latencies": latencies, "errors": errors}


async def warm_prefect() -> None:
    """Start Prefect's ephemeral server before the clock starts, without sending any request."""
    from prefect import flow

    @flow(name="bench-warm-up")
    def warm() -> int:
        return 1

    await asyncio.to_thread(warm)


async def main(cfg: dict[str, Any]) -> None:
    client: Client | None = None
    if cfg["client"] == "flow":
        await warm_prefect()
    else:
        client = make_client(cfg)
    _say("READY")
    line = await _read_line()
    if not line.startswith("GO "):
        return
    start = float(line.split()[1])
    cpu0 = time.process_time()
    try:
        if client is None:
            await asyncio.sleep(max(start - time.time(), 0))
            result = await flow_batch(cfg)
        else:
            result = await open_loop(client, cfg, start)
        result["cpu_s"] = time.process_time() - cpu0
        result["setup_s"] = cfg.get("setup_s")
        _say("RESULT " + json.dumps(result))
        await _read_line()  # EXIT, or the end of input when the orchestrator went away
    finally:
        if client is not None:
            await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
