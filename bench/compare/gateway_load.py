"""What ``bench.compare.gateway`` sends through each target, and what it counts.

Light part: open-loop batches (requests arrive at a fixed modest rate, so the gateway is never
saturated and what is measured is its overhead, not a queue), interleaved round by round across
the targets (in a rotating order) so a noisy neighbour on the machine weighs on all of them alike. Each request is timed from just before
it is sent: a message to its whole body, a stream to the first byte of its body (time to first
byte) and to its end. The gateway's CPU time (its process and children, from /proc) is taken
before and after each of its own batches only.

Load part: one target at a time on the same simulator, each after the organizations' request
buckets were drained and the counters reset (as in ``bench.compare``); requests arrive open-loop at
the scenario's times, each with the scenario's budget; no client retries.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.compare.gateway_paths import ANTHROPIC_VERSION, LIGHT_MODEL, LOAD_MODEL, SimKeys, Target
from bench.compare.measure import LIMIT_COUNTERS, SimProcess, tree_cpu_seconds
from bench.compare.scenarios import BenchScenario, arrival_offsets

__all__ = ["WARM_UP_REQUESTS", "LightTimings", "LoadCounts", "measure_light", "run_load"]

#: Requests per target before the timed ones: connections opened, first-call caches filled.
WARM_UP_REQUESTS = 20
LIGHT_TIMEOUT_S = 30.0


@dataclass
class LightTimings:
    messages_s: list[float] = field(default_factory=list)
    ttfb_s: list[float] = field(default_factory=list)
    stream_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0  # the gateway's CPU during its own timed batches
    requests: int = 0  # requests in those batches
    max_in_flight: int = 0  # the most requests sent and not yet answered at once


@dataclass
class LoadCounts:
    offered: int = 0
    answered_s: list[float] = field(default_factory=list)  # each answered request's latency
    failures: Counter[str] = field(default_factory=Counter)
    upstream_429: int = 0  # the simulator's own count of rate-limit refusals
    served_in_window: int = 0  # what the simulator served from the load's start to its end
    allowed: float = 0.0  # what the limits allowed in that window
    cpu_s: float = 0.0


def _body(index: int, model: str, max_tokens: int, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": f"Bench question {index}: say something short."}],
    }
    if stream:
        body["stream"] = True
    return body


async def _message(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any]
) -> tuple[str | None, float]:
    """(failure or None, seconds from sending to the whole answer)."""
    sent = time.perf_counter()
    async with session.post(url, data=json.dumps(body), headers=headers) as resp:
        raw = await resp.read()
        elapsed = time.perf_counter() - sent
    if resp.status != 200:
        return f"HTTP {resp.status}", elapsed
    if json.loads(raw).get("type") != "message":
        return "not a message", elapsed
    return None, elapsed


async def _stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any]
) -> tuple[str | None, float, float]:
    """(failure or None, seconds to the first byte of the body, seconds to its end)."""
    sent = time.perf_counter()
    async with session.post(url, data=json.dumps(body), headers=headers) as resp:
        first = await resp.content.readany()
        ttfb = time.perf_counter() - sent
        rest = await resp.content.read()
        elapsed = time.perf_counter() - sent
    if resp.status != 200:
        return f"HTTP {resp.status}", ttfb, elapsed
    text = first + rest
    if b"event: error" in text:
        return "error event", ttfb, elapsed
    if b"message_stop" not in text:
        return "stream cut short", ttfb, elapsed
    return None, ttfb, elapsed


async def _light_one(
    session: aiohttp.ClientSession,
    target: Target,
    index: int,
    max_tokens: int,
    *,
    stream: bool,
    into: LightTimings | None,
) -> None:
    url = f"{target.base_url}/v1/messages"
    body = _body(index, LIGHT_MODEL, max_tokens, stream=stream)
    ttfb = 0.0
    try:
        async with asyncio.timeout(LIGHT_TIMEOUT_S):
            if stream:
                failure, ttfb, elapsed = await _stream(session, url, target.light_headers, body)
            else:
                failure, elapsed = await _message(session, url, target.light_headers, body)
    except Exception as exc:  # every failure is a count, never a crash
        failure = type(exc).__name__
    if into is None:
        return
    if failure is not None:
        into.errors[("stream: " if stream else "") + failure] += 1
    elif stream:
        into.ttfb_s.append(ttfb)
        into.stream_s.append(elapsed)
    else:
        into.messages_s.append(elapsed)


async def _batch(
    session: aiohttp.ClientSession,
    target: Target,
    count: int,
    rate: float,
    max_tokens: int,
    *,
    stream: bool,
    into: LightTimings | None,
) -> None:
    """``count`` requests arriving ``rate`` a second, evenly spaced (open loop: one that is slow to
    answer does not delay the next); timings into ``into`` (None: warm-up)."""
    pids = [target.pid] if target.pid is not None else []
    cpu0 = tree_cpu_seconds(pids)
    start = time.perf_counter()
    tasks = []
    for i in range(count):
        await asyncio.sleep(max(start + i / rate - time.perf_counter(), 0.0))
        tasks.append(
            asyncio.create_task(_light_one(session, target, i, max_tokens, stream=stream, into=into))
        )
        if into is not None:
            into.max_in_flight = max(into.max_in_flight, sum(1 for t in tasks if not t.done()))
    await asyncio.gather(*tasks)
    if into is not None:
        into.cpu_s += tree_cpu_seconds(pids) - cpu0
        into.requests += count


async def measure_light(
    sessions: dict[str, aiohttp.ClientSession],
    targets: list[Target],
    requests: int,
    rate: float,
    batch: int,
    max_tokens: int,
) -> dict[str, LightTimings]:
    """``requests`` messages and ``requests`` streams per target, in rounds of ``batch`` each."""
    timings = {t.name: LightTimings() for t in targets}
    for t in targets:
        for stream in (False, True):
            await _batch(sessions[t.name], t, WARM_UP_REQUESTS, rate, max_tokens, stream=stream, into=None)
    rounds = -(-requests // batch)
    for r in range(rounds):
        count = min(batch, requests - r * batch)
        order = targets[r % len(targets) :] + targets[: r % len(targets)]
        for stream in (False, True):
            for t in order:
                await _batch(
                    sessions[t.name], t, count, rate, max_tokens, stream=stream, into=timings[t.name]
                )
    return timings


# ---- the load with limits ---------------------------------------------------------------------------


async def _drain(session: aiohttp.ClientSession, sim: SimProcess, keys: SimKeys) -> None:
    """Fill every bucket, then empty each load organization's request bucket, then forget the
    counts: the load meets accounts in steady state, not a minute's worth of rested capacity."""
    await sim.post(session, "/_sim/reset", {"counters": True, "buckets": True})
    first: dict[str, str] = {}
    for k in keys.load:
        first.setdefault(k["org"], k["key"])
    rpm = {o["id"]: int(o["limits"]["rpm"]) for o in sim.described["organizations"]}

    async def one(org: str, key: str) -> None:
        headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
        body = _body(0, LOAD_MODEL, 1, stream=False)
        for _ in range(rpm[org] + 20):
            async with session.post(sim.base_url + "/v1/messages", json=body, headers=headers) as resp:
                await resp.read()
                if resp.status == 429:
                    return

    await asyncio.gather(*(one(org, key) for org, key in first.items()))
    await sim.post(session, "/_sim/reset", {"counters": True, "buckets": False})


async def _served(session: aiohttp.ClientSession, sim: SimProcess, at: float) -> int:
    await asyncio.sleep(max(at - time.time(), 0.0))
    stats = await sim.get(session, "/_sim/stats")
    return sum(int(v["served"]) for v in stats["keys"].values())


async def run_load(
    session: aiohttp.ClientSession, sim: SimProcess, keys: SimKeys, target: Target, scenario: BenchScenario
) -> LoadCounts:
    """The scenario's arrivals through ``target``; counts from the caller and from the simulator."""
    counts = LoadCounts()
    await _drain(session, sim, keys)
    offsets = arrival_offsets(scenario)
    counts.offered = len(offsets)
    counts.allowed = scenario.allowed(scenario.duration_s)
    url = f"{target.base_url}/v1/messages"
    headers = itertools.cycle(target.load_headers)
    start = time.time() + 1.0
    window = asyncio.create_task(_served(session, sim, start + scenario.duration_s))

    async def one(index: int, due: float, sending: dict[str, str]) -> None:
        body = _body(index, LOAD_MODEL, scenario.max_tokens, stream=False)
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(max(due + scenario.budget_s - time.time(), 0.01)):
                failure, elapsed = await _message(session, url, sending, body)
        except TimeoutError:
            failure, elapsed = "budget exceeded", time.perf_counter() - sent
        except Exception as exc:
            failure, elapsed = type(exc).__name__, time.perf_counter() - sent
        if failure is None:
            counts.answered_s.append(elapsed)
        else:
            counts.failures[failure] += 1

    pids = [target.pid] if target.pid is not None else []
    cpu0 = tree_cpu_seconds(pids)
    tasks = []
    for index, offset in enumerate(offsets):
        due = start + offset
        await asyncio.sleep(max(due - time.time(), 0.0))
        tasks.append(asyncio.create_task(one(index, due, next(headers))))
    await asyncio.gather(*tasks)
    counts.cpu_s = tree_cpu_seconds(pids) - cpu0
    counts.served_in_window = await window
    stats = await sim.get(session, "/_sim/stats")
    counts.upstream_429 = sum(int(stats["total"][c]) for c in LIMIT_COUNTERS)
    return counts
