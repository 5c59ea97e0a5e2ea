"""One client process of one contender (``run_worker``, started by ``bench.compare.processes``).

Protocol on its pipe: the worker sets its client up and sends ``("ready",)``; it waits for
``("go", epoch)``, offers its share of the requests at their times from that epoch (open loop,
each with the scenario's time budget), sends ``("result", {...})``, and exits on ``("exit",)`` or
when the pipe closes. The delegate_batch flow variant hands all its requests to one flow run at
``go`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from bench.compare.clients import Client, make_client
from bench.compare.processes import receive, redirect_output, set_environment

#: At most this many requests in flight per worker; an arrival beyond it fails as "overflow".
MAX_IN_FLIGHT = 512


async def open_loop(client: Client, cfg: dict[str, Any], start: float) -> dict[str, Any]:
    """Offers the requests at their due times; returns one record per request, as
    ``(due offset s, failure name or None, seconds from sending to its end or None)``: the end is the
    answer or the failure the caller saw; an arrival never sent (overflow) has no duration."""
    budget = float(cfg["budget_s"])
    records: list[tuple[float, str | None, float | None]] = []
    in_flight = 0

    async def one(index: int, offset: float, due: float) -> None:
        nonlocal in_flight
        in_flight += 1
        sent = time.time()
        failure: str | None = None
        try:
            async with asyncio.timeout(max(due + budget - sent, 0.01)):
                await client.call(index, due + budget)
        except TimeoutError:
            failure = "budget exceeded"
        except Exception as exc:  # every failure the caller sees is a figure, never a crash
            failure = type(exc).__name__
        finally:
            in_flight -= 1
        records.append((offset, failure, time.time() - sent))

    tasks = []
    for index, offset in zip(cfg["indices"], cfg["offsets"], strict=True):
        due = start + float(offset)
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight >= MAX_IN_FLIGHT:
            records.append((float(offset), "overflow", None))
            continue
        tasks.append(asyncio.create_task(one(index, float(offset), due)))
    await asyncio.gather(*tasks)
    errors = Counter(failure for _, failure, _ in records if failure is not None)
    return {
        "offered": len(cfg["indices"]),
        "ok": sum(1 for _, failure, _ in records if failure is None),
        "latencies": [elapsed for _, failure, elapsed in records if failure is None],
        "errors": dict(errors),
        "requests": records,
    }


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


def run_worker(cfg: dict[str, Any], env: dict[str, str], conn: Connection) -> None:
    """Child process entry: the contender's environment first, then its client."""
    set_environment(env)
    redirect_output(cfg.get("log"))
    try:
        asyncio.run(_main(cfg, conn))
    except Exception as exc:  # the orchestrator reports it as the contender's set-up or run error
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


async def _main(cfg: dict[str, Any], conn: Connection) -> None:
    client: Client | None = None
    if cfg["client"] == "flow":
        await warm_prefect()
    else:
        client = make_client(cfg)
    conn.send(("ready",))
    try:
        message = await receive(conn, None)
        if message[0] != "go":
            return
        start = float(message[1])
        cpu0 = time.process_time()
        if client is None:
            await asyncio.sleep(max(start - time.time(), 0))
            result = await flow_batch(cfg)
        else:
            result = await open_loop(client, cfg, start)
        result["cpu_s"] = time.process_time() - cpu0
        result["setup_s"] = cfg.get("setup_s")
        conn.send(("result", result))
        with contextlib.suppress(EOFError):
            await receive(conn, None)  # exit, or the pipe closing when the orchestrator went away
    except EOFError:
        return
    finally:
        if client is not None:
            await client.aclose()
