"""Redis lost in the middle of a batch, then back: requests with a deadline wait for it instead of
failing (those that cannot wait fail clearly with ``BackendUnavailable``), each is recorded once and
ends, no capacity stays taken after the leases are reclaimed, and the same pool serves again
without a restart.

Two kinds of loss: the network cut (a proxy resets every connection; Redis keeps its data) and a
restart (a throwaway ``redis-server`` killed with SIGKILL and started again on its port, empty)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.batch import run_batch
from claude_pool.records.executions import ExecutionStore
from claude_pool.simulator import Latency, Scenario
from tests.plugins.simulators import drain_key
from tests.reliability.conftest import TENANT, execution_rows, wait_until
from tests.reliability.netfaults import RedisServer, TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.usefixtures("tasks_shown_if_hung")]

LEASE_SECONDS = 2.0
MAX_IN_FLIGHT = 4  # per account: a leaked lease would show as a slot never given back
REQUESTS = 48


class Outage(Protocol):
    url: str

    def down(self) -> None: ...
    def up(self) -> None: ...


class _Cut:
    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self.url = f"redis://{proxy.address}/0"

    def down(self) -> None:
        self.proxy.cut()

    def up(self) -> None:
        self.proxy.restore()


class _Restart:
    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.url = server.url

    def down(self) -> None:
        self.server.stop()

    def up(self) -> None:
        self.server.start()


@pytest.fixture(params=["network-cut", "restart-empty"])
def outage(
    request: pytest.FixtureRequest, tmp_path: Path, proxy_factory: Callable[[str, int], TcpProxy]
) -> Iterator[Outage]:
    if request.param == "network-cut":
        url = request.getfixturevalue("redis_url")  # the shared server, behind a proxy of our own
        host_port = url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        yield _Cut(proxy_factory(host, int(port)))
        return
    server = RedisServer(tmp_path / "redis")
    try:
        yield _Restart(server.start())
    finally:
        server.stop()


def _requests(prefix: str, n: int) -> list[DelegationRequest]:
    return [
        DelegationRequest(organization_id=TENANT, message=f"{prefix} {i}", max_tokens=32) for i in range(n)
    ]


async def test_redis_lost_mid_batch_fails_clearly_records_each_request_once_leaks_no_capacity_and_recovers(
    outage: Outage, redis_prefix: str, sim_world: Callable[..., Any]
) -> None:
    scenario = Scenario.uniform(
        accounts=3, rpm=60_000, itpm=60_000_000, otpm=6_000_000, latency=Latency(ttft_ms=400)
    )
    runtime, sim, ids = sim_world(
        scenario,
        redis_url=outage.url,
        redis_prefix=redis_prefix,
        config={"capacity": {"leaseTimeoutSeconds": LEASE_SECONDS}},
        extra={"max_in_flight": MAX_IN_FLIGHT},
    )
    executions = ExecutionStore(runtime.db)

    async def lose_redis() -> None:
        # a few rounds of calls reached upstream, and the next ones are in flight
        await wait_until(lambda: sim.stats().total["received"] >= 24, what="two rounds of calls were sent")
        outage.down()
        await asyncio.sleep(2.5)  # the outage itself: how long Redis stays away is the test
        outage.up()

    async with Pool.open(runtime) as pool:
        first, _ = await asyncio.gather(
            run_batch(
                pool,
                _requests("during", REQUESTS),
                concurrency=12,
                executions=executions,
                max_wait_seconds=30,
            ),
            lose_redis(),
        )
        # the same pool, no restart: everything is served again
        second = await run_batch(
            pool, _requests("after", 24), concurrency=12, executions=executions, max_wait_seconds=30
        )
        assert [o.status for o in second] == ["succeeded"] * 24, [
            (o.error_type, o.error_message) for o in second if o.error_message
        ]

        # leases of calls whose settle could not reach Redis expire and are reclaimed (letting the
        # lease time pass is the test: Redis counts it on its own clock)
        await asyncio.sleep(LEASE_SECONDS + 0.5)
        await pool.capacity.reclaim_expired()
        await asyncio.sleep(1.0)  # a second of refill covers what this test spent many times over
        accounts = await pool.directory.all()
        views = await pool.capacity.view([a.candidate for a in accounts])

    rows = execution_rows(runtime)
    statuses = [r[1] for r in rows]
    failed_types = {r[2] for r in rows if r[1] == "failed"}
    total = sim.stats().total
    print(
        f"\n[{type(outage).__name__}] during: {sum(o.status == 'succeeded' for o in first)} succeeded, "
        f"{sum(o.status == 'failed' for o in first)} failed {failed_types}; after: 24/24; "
        f"simulator served {total['served']}"
    )
    assert len(rows) == REQUESTS + 24 == len({r[0] for r in rows})  # one row per request
    assert set(statuses) <= {"succeeded", "failed"}  # every one ended
    assert failed_types <= {"BackendUnavailable"}  # and the failures say what failed
    assert statuses.count("failed") == 0  # every request had 30 s to live: each waited for Redis
    assert any(o.status == "succeeded" for o in first)
    # nothing was sent twice: a success is one call served upstream (a call served while Redis was
    # away may end as failed, since its settlement could not be written)
    assert statuses.count("succeeded") <= total["served"] == total["received"]
    assert total["rejected_rate_limit_requests"] == 0
    for view in views:
        assert view.in_flight == 0, view
        assert view.requests == pytest.approx(view.limits.rpm, abs=1), view
        assert view.input_tokens == pytest.approx(view.limits.itpm, rel=1e-3), view
        assert view.output_tokens == pytest.approx(view.limits.otpm, rel=1e-3), view
    assert {v.account_id for v in views} == set(ids.values())


async def test_an_answer_already_paid_for_is_kept_when_redis_drops_during_the_call(
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    proxy_factory: Callable[[str, int], TcpProxy],
    anthropic_sim_factory: Callable[..., Any],
    encryption_key: str,
) -> None:
    from tests.reliability.conftest import make_runtime, register_keys

    host, port = redis_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    proxy = proxy_factory(host, int(port))
    sim = anthropic_sim_factory(
        Scenario.uniform(
            accounts=1, rpm=10_000, itpm=10_000_000, otpm=1_000_000, latency=Latency(ttft_ms=800)
        )
    )
    runtime = make_runtime(
        tmp_path, sim, encryption_key, redis_url=f"redis://{proxy.address}/0", redis_prefix=redis_prefix
    )
    register_keys(runtime, sim)
    try:
        async with Pool.open(runtime) as pool:
            call = asyncio.create_task(
                pool.delegate(DelegationRequest(organization_id=TENANT, message="hi", max_tokens=8))
            )
            # reserved, and the call is with upstream (which answers after 800 ms)
            await wait_until(lambda: sim.stats().total["received"] == 1, what="the call reached upstream")
            proxy.cut()
            result = await call  # settling fails: Redis is gone, but the answer is not dropped
            proxy.restore()
        assert result.text and sim.stats().total["served"] == 1
    finally:
        runtime.close()


async def test_a_restart_of_redis_under_load_fails_nothing_and_overruns_nothing(
    tmp_path: Path, redis_prefix: str, sim_world: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """One key of 60 RPM that another client has drained; an open-loop load at half its rate, each
    request with 20 s to live; Redis killed for 2 s in the middle and started again empty. Requests
    wait for the store instead of failing, and the rebuilt bucket is taken as drained, not full."""

    server = RedisServer(tmp_path / "redis").start()
    try:
        runtime, sim, _ids = sim_world(
            Scenario.uniform(accounts=1, rpm=60, itpm=10_000_000, otpm=1_000_000),
            redis_url=server.url,
            redis_prefix=redis_prefix,
            config={"capacity": {"coldStart": "empty"}},  # a bucket rebuilt empty, never as full
        )
        drain_key(sim, sim.keys[0])

        async def restart() -> None:
            await asyncio.sleep(5.0)
            server.stop()
            await asyncio.sleep(2.0)  # the outage itself: how long Redis stays away is the test
            server.start()

        async def one(pool: Pool, i: int) -> str:
            await asyncio.sleep(2.0 * i)  # half the key's rate
            request = DelegationRequest(
                organization_id=TENANT, message=f"q{i}", max_tokens=16, deadline=time.time() + 20
            )
            return (await pool.delegate(request)).text

        with caplog.at_level(logging.WARNING, logger="claude_pool.pool"):
            async with Pool.open(runtime) as pool:
                answers, _ = await asyncio.gather(asyncio.gather(*(one(pool, i) for i in range(7))), restart())
    finally:
        server.stop()
    assert all(answers)  # no request failed
    total = sim.stats().total
    assert total["served"] == total["received"] == 7  # none was sent twice
    assert sim.stats().rate_limited == 0  # no limit overrun, before or after the restart
    messages = [r.getMessage() for r in caplog.records]
    # the request due during the outage met it: one warning when it began, one when it ended
    assert messages.count("store away; requests with a deadline wait for it") == 1
    assert messages.count("store back") == 1
