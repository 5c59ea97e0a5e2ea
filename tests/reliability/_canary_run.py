"""The full run of the secret-canary test, in a process of its own so that everything it writes
(Prefect's home and database, logs, console) lands where the test can read it, and so that every
exception raised anywhere in it can be traced and kept.

Reads the canary keys from ``CANARY_KEYS_JSON`` (name -> key) and never writes them anywhere;
writes what an outsider could see (HTTP responses, SSE events, flow results, exception texts) to
the JSON file named by ``CANARY_OUT``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import traceback
from types import FrameType
from typing import Any

_SEEN: dict[int, BaseException] = {}
_CONTROL_FLOW_SEEN: set[int] = set()
_CONTROL_FLOW = (StopIteration, StopAsyncIteration, GeneratorExit)
_CAP = 300_000


def _local(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "exception" and len(_SEEN) < _CAP:
        exc = arg[1]
        if isinstance(exc, _CONTROL_FLOW):
            # How every generator and coroutine returns its value (here: ASGI messages carrying the
            # request body a client sent), not an error that anyone reads.
            _CONTROL_FLOW_SEEN.add(id(exc))
        elif isinstance(exc, BaseException):
            _SEEN.setdefault(id(exc), exc)
    return _local


def _global(frame: FrameType, event: str, arg: Any) -> Any:
    # Only exception events are wanted: no line events (they would slow the run tenfold).
    frame.f_trace_lines = False
    return _local


def _exception_texts() -> list[str]:
    texts = []
    for exc in list(_SEEN.values()):
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            try:
                texts.append(f"{type(current).__name__}: {current!s} | {current!r}")
            except Exception as failed:  # an exception whose str fails is still counted
                texts.append(f"{type(current).__name__}: <str failed: {failed!r}>")
            current = current.__cause__ or current.__context__
    return texts


async def _run(out: dict[str, Any]) -> None:
    import httpx

    from claude_pool.events.bus import Event
    from claude_pool.http import ApiTokens, create_app
    from claude_pool.pool import Pool
    from claude_pool.pool.models import DelegationRequest
    from claude_pool.records.batch import run_batch
    from claude_pool.records.executions import ExecutionStore
    from claude_pool.runtime import Runtime
    from claude_pool_flows import capacity_sync, delegate, delegate_batch, health_check, quota_sweep
    from tests.http.harness import SseReader, UvicornThread

    keys: dict[str, str] = json.loads(os.environ.pop("CANARY_KEYS_JSON"))
    runtime = Runtime.from_env()
    token = "canary-test-admin-token-" + "t" * 16
    app = create_app(runtime, tokens=ApiTokens.parse(json.dumps({token: "*"})), heartbeat_seconds=0.2)
    server = UvicornThread(app).start()
    reader = SseReader(server.base_url, token).start()
    responses: list[str] = out.setdefault("http", [])
    try:
        with httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            # registration over the admin API (the CLI registered the others)
            for name, key in keys.items():
                if name in ("canary-init", "canary-cli-stdin", "canary-cli-env"):
                    continue
                body: dict[str, Any] = {
                    "organizationId": "tenant-a",
                    "name": name,
                    "apiKey": key,
                    "tier": "pro",
                }
                if name == "canary-ok":
                    # quota alerts fire on it: its daily token budget is spent by the burst below
                    body.update(priority=0, requestsPerMinute=10, dailyTokenBudget=300)
                r = client.post("/api/v1/admin/claude-accounts", json=body)
                responses.append(f"{r.status_code} {r.text}")
            # a duplicate and a malformed registration: errors must not echo the key either
            for body in (
                {"organizationId": "tenant-a", "name": "dup", "apiKey": keys["canary-ok"], "tier": "pro"},
                {
                    "organizationId": "tenant-a",
                    "name": "bad",
                    "apiKey": keys["canary-ok"] + " x",
                    "tier": "pro",
                },
            ):
                r = client.post("/api/v1/admin/claude-accounts", json=body)
                responses.append(f"{r.status_code} {r.text}")
            for path in ("/api/v1/admin/claude-accounts", "/health"):
                r = client.get(path)
                responses.append(f"{r.status_code} {r.text}")
            # delegations over the execute endpoint, round robin over every account (each failure class)
            for i in range(14):
                r = client.post(
                    "/api/orchestrator/execute",
                    json={
                        "organizationId": "tenant-a",
                        "message": f"http {i}",
                        "maxTokens": 16,
                        "strategy": "round_robin",
                    },
                )
                responses.append(f"{r.status_code} {r.text}")
            r = client.post(
                "/api/orchestrator/execute",
                json={"organizationId": "tenant-a", "message": "x", "model": "gpt-4"},
            )
            responses.append(f"{r.status_code} {r.text}")  # a 400 from upstream
            executed = [
                json.loads(t.split(" ", 1)[1]).get("executionId") for t in responses if t.startswith("200 {")
            ]
            for execution_id in [e for e in executed if e]:
                r = client.get(f"/api/orchestrator/executions/{execution_id}")
                responses.append(f"{r.status_code} {r.text}")

        # the library path: a batch with every failure class, and a burst on the tight account
        async with Pool.open(runtime) as pool:
            pool.call_timeout = 2.0  # the hanging key times out quickly
            store = ExecutionStore(runtime.db)
            batch = [
                DelegationRequest(
                    organization_id="tenant-a", message=f"lib {i}", max_tokens=16, strategy="round_robin"
                )
                for i in range(30)
            ]
            outcomes = await run_batch(pool, batch, concurrency=4, executions=store)
            burst = [
                DelegationRequest(
                    organization_id="tenant-a", message=f"burst {i}", max_tokens=8, strategy="priority"
                )
                for i in range(9)
            ]
            outcomes += await run_batch(pool, burst, concurrency=1, executions=store)
            out["library"] = [repr(o) for o in outcomes]

        # the flows, as a user calls them (Prefect's ephemeral mode, its home in the test's folder)
        flows: list[str] = out.setdefault("flows", [])
        for i, model in enumerate([None, None, None, "gpt-4"]):  # the last one is refused upstream (400)
            try:  # a flow that ends failed raises; its text is a sink too
                flows.append(
                    repr(
                        await delegate(
                            organization_id="tenant-a", message=f"flow {i}", max_tokens=16, model=model
                        )
                    )
                )
            except Exception as exc:
                flows.append(repr(exc))
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}
        ) as c:
            r = await c.get("/api/v1/admin/quota-alerts")
            responses.append(f"{r.status_code} {r.text}")
        flows.append(
            repr(
                await delegate_batch(
                    requests=[{"message": f"fb {i}", "strategy": "round_robin"} for i in range(24)],
                    organization_id="tenant-a",
                    max_tokens=16,
                    concurrency=4,
                    chunk_size=8,
                )
            )
        )
        flows.append(repr(await capacity_sync()))
        flows.append(repr(await quota_sweep()))
        flows.append(repr(await health_check()))
        # The last events reach the stream: a marker published after them arrives after them.
        end = server.call(app.state.ctx.bus.publish(Event("test.end", None, {})))
        await asyncio.to_thread(reader.wait_for, lambda e: e.get("id") == end.id)
    finally:
        reader.stop()
        out["sse"] = [json.dumps(e) for e in reader.events] + reader.comments
        server.stop()
        runtime.close()


def main() -> None:
    out: dict[str, Any] = {}
    sys.settrace(_global)
    threading.settrace(_global)
    try:
        asyncio.run(_run(out))
    except BaseException:
        out["crash"] = traceback.format_exc()
        raise
    finally:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
        out["exceptions"] = _exception_texts()
        out["exception_count"] = len(_SEEN)
        out["control_flow_count"] = len(_CONTROL_FLOW_SEEN)
        with open(os.environ["CANARY_OUT"], "w", encoding="utf-8") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
