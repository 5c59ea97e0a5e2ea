"""The API on PostgreSQL and Redis: the event bus is a Redis stream, so an event published by
another process (another bus instance) reaches the SSE client, and a reconnect resumes by id."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from claude_pool.events.bus import Event, RedisEventBus
from tests.http.harness import ORG_A, ORG_B, ApiServer, SseReader, serve_api

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _publish_elsewhere(redis_url: str, prefix: str, event: Event) -> Event:
    """As a Prefect worker in another process would: a bus instance of its own, its own loop."""

    async def publish() -> Event:
        bus = RedisEventBus(redis_url, prefix=prefix)
        try:
            return await bus.publish(event)
        finally:
            await bus.aclose()

    return asyncio.run(publish())


class TestOnPostgresAndRedis:
    @pytest.fixture
    def api(
        self, tmp_path: Path, fresh_postgres_url: str, redis_url: str, redis_prefix: str
    ) -> Iterator[ApiServer]:
        with serve_api(
            tmp_path,
            os.urandom(32).hex(),
            database_url=fresh_postgres_url,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
        ) as server:
            yield server

    def test_execute_and_events_across_processes(
        self, api: ApiServer, redis_url: str, redis_prefix: str
    ) -> None:
        health = httpx.get(f"{api.base_url}/health").json()
        assert health["database"] == {"status": "up", "dialect": "postgresql"}
        assert health["redis"]["status"] == "up"

        admin = api.client("admin")
        account = api.register(admin, ORG_A, api.sim.keys[0].key, "pg-a")
        assert account["breaker"]["state"] == "closed" and account["capacity"]["headroom"] > 0
        with SseReader(api.base_url, api.tokens["a"]) as stream:
            stream.wait_until_live(api.publish, ORG_A)  # the subscription has its starting point
            result = admin.post("/api/orchestrator/execute", json={"message": "hi", "organizationId": ORG_A})
            assert result.status_code == 200, result.text
            stream.wait_for(lambda e: e["event"] == "execution.succeeded")
            _publish_elsewhere(redis_url, redis_prefix, Event("quota.alert", ORG_B, {"n": 0}))
            elsewhere = _publish_elsewhere(redis_url, redis_prefix, Event("quota.alert", ORG_A, {"n": 1}))
            seen = stream.wait_for(lambda e: e["event"] == "quota.alert")
            assert seen["id"] == elsewhere.id and seen["data"]["data"] == {"n": 1}
        assert {e["data"]["organizationId"] for e in stream.events} == {ORG_A}

        # Published while nobody listens; a reconnect with Last-Event-ID gets it from the stream.
        _publish_elsewhere(redis_url, redis_prefix, Event("quota.alert", ORG_A, {"n": 2}))
        with SseReader(api.base_url, api.tokens["a"], last_event_id=seen["id"]) as again:
            assert again.wait_for(lambda e: e["event"] == "quota.alert")["data"]["data"] == {"n": 2}

        with api.runtime.db.engine.connect() as conn:
            status = conn.execute(
                text("SELECT status FROM orchestrator_executions WHERE id = :id"),
                {"id": result.json()["executionId"]},
            ).scalar_one()
        assert status == "succeeded"
