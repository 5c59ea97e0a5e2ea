"""The event stream: scoped to the caller's organizations, resumable, and never held up by a slow
client."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_pool.events.bus import Event
from claude_pool.quota.rules import alert_event
from claude_pool.storage import QuotaAlert
from tests.http.harness import ORG_A, ORG_B, ApiServer, SseReader, serve_api
from tests.http.test_api_conventions import snake_members


@pytest.fixture(scope="module")
def two_orgs(api: ApiServer) -> Iterator[ApiServer]:
    admin = api.client("admin")
    api.register(admin, ORG_A, api.sim.keys[0].key, "events-a")
    api.register(admin, ORG_B, api.sim.keys[1].key, "events-b")
    yield api


def _execute(api: ApiServer, org: str, n: int) -> None:
    client = api.client("admin")
    for i in range(n):
        response = client.post(
            "/api/orchestrator/execute", json={"message": f"hi {i}", "organizationId": org}
        )
        assert response.status_code == 200, response.text


END = "test.end"
EXECUTE = "/api/orchestrator/execute"


def _read_to_the_end(api: ApiServer, *streams: SseReader) -> None:
    """Publish an end marker for every audience, and read each stream up to one.

    The server has one bus and each subscription gets its events in the order published, so a
    stream that shows a marker has already shown everything before it that it would ever show."""
    for org in (ORG_A, ORG_B, None):
        api.publish(Event(END, org, {}))
    for stream in streams:
        stream.wait_for(lambda e: e["event"] == END)


def test_a_client_of_organization_a_never_sees_organization_b(two_orgs: ApiServer) -> None:
    api = two_orgs
    with (
        SseReader(api.base_url, api.tokens["a"]) as stream_a,
        SseReader(api.base_url, api.tokens["b"]) as stream_b,
        SseReader(api.base_url, api.tokens["admin"]) as stream_all,
    ):
        for _ in range(3):
            _execute(api, ORG_A, 1)
            _execute(api, ORG_B, 1)
        for org in (ORG_A, ORG_B, None):
            api.publish(Event("quota.alert", org, {"metric": "requests_per_minute", "threshold": 0.8}))
        # Everything above reached every stream it was meant for once each stream has its marker:
        # one bus delivers in order, so anything of B that A's stream were to show would be there.
        _read_to_the_end(api, stream_a, stream_b, stream_all)
        stream_a.wait_for_comment(": ping")  # heartbeats while idle
    a_orgs = {e["data"]["organizationId"] for e in stream_a.events}
    b_orgs = {e["data"]["organizationId"] for e in stream_b.events}
    all_orgs = {e["data"]["organizationId"] for e in stream_all.events}
    assert a_orgs == {ORG_A} and b_orgs == {ORG_B} and all_orgs == {ORG_A, ORG_B, None}
    kinds = {e["event"] for e in stream_a.events}
    assert {"account.selected", "execution.succeeded", "quota.alert"} <= kinds
    assert len([e for e in stream_a.events if e["event"] == "execution.succeeded"]) == 3


def test_events_are_camel_case_and_name_the_execution_they_are_about(two_orgs: ApiServer) -> None:
    api = two_orgs
    admin = api.client("admin")
    with SseReader(api.base_url, api.tokens["a"]) as stream:
        served = admin.post(EXECUTE, json={"message": "hi", "organizationId": ORG_A, "userId": "u-5"})
        assert served.status_code == 200, served.text
        refused = admin.post(EXECUTE, json={"message": "hi", "organizationId": ORG_A, "model": "gpt-4"})
        assert refused.status_code == 404, refused.text  # the simulator knows no such model
        account_id = served.json()["accountId"]
        alert = QuotaAlert(
            id=7, account_id=account_id, organization_id=ORG_A, metric="requests_per_minute",
            threshold=0.8, window="2026-12-03T10:00", observed=810, limit=1000, fraction=0.81,
        )  # fmt: skip
        api.publish(alert_event(alert, "events-a"))  # as a quota sweep publishes it
        _read_to_the_end(api, stream)
    served_id, refused_id = served.json()["executionId"], refused.json()["error"]["executionId"]

    assert {e["id"]: snake_members(e["data"]) for e in stream.events} == {e["id"]: [] for e in stream.events}
    by_type: dict[str, list[dict[str, object]]] = {}
    for event in stream.events:
        assert event["data"]["type"] == event["event"] and event["data"]["id"] == event["id"]
        by_type.setdefault(event["event"], []).append(event["data"]["data"])
    selections = {d["executionId"] for d in by_type["account.selected"]}
    assert {served_id, refused_id} <= selections
    succeeded = [d for d in by_type["execution.succeeded"] if d["executionId"] == served_id]
    assert len(succeeded) == 1 and succeeded[0]["accountId"] == account_id
    assert succeeded[0]["userId"] == "u-5" and succeeded[0]["inputTokens"] > 0
    failed = [d for d in by_type["execution.failed"] if d["executionId"] == refused_id]
    assert len(failed) == 1 and failed[0]["errorType"] == "CallerRequestError"
    (quota,) = by_type["quota.alert"]
    assert quota["alertId"] == 7 and quota["accountName"] == "events-a" and quota["fraction"] == 0.81


def test_narrowing_to_one_organization(two_orgs: ApiServer) -> None:
    api = two_orgs
    with SseReader(
        api.base_url, api.tokens["ab"], path=f"/api/events/stream?organizationId={ORG_B}"
    ) as stream:
        api.publish(Event("quota.alert", ORG_A, {}))
        api.publish(Event("quota.alert", ORG_B, {}))
        # A's event was published first: had the stream let it through, it would be there by now.
        stream.wait_for(lambda e: e["data"]["organizationId"] == ORG_B)
    assert {e["data"]["organizationId"] for e in stream.events} == {ORG_B}


def test_last_event_id_resumes(two_orgs: ApiServer) -> None:
    api = two_orgs
    with SseReader(api.base_url, api.tokens["a"]) as first:
        api.publish(Event("quota.alert", ORG_A, {"n": 1}))
        seen = first.wait_for(lambda e: e["data"]["data"].get("n") == 1)
    # Published while no client is connected.
    api.publish(Event("quota.alert", ORG_A, {"n": 2}))
    api.publish(Event("quota.alert", ORG_B, {"n": 3}))
    with SseReader(api.base_url, api.tokens["a"], last_event_id=seen["id"]) as again:
        resumed = again.wait_for(lambda e: e["data"]["data"].get("n") == 2)
        _read_to_the_end(api, again)  # B's n=3, kept in between, would have come before the marker
    assert int(resumed["id"]) > int(seen["id"])
    assert all(e["data"]["organizationId"] == ORG_A for e in again.events)


def _raw_stream(port: int, token: str) -> socket.socket:
    """A client that opens the stream and then never reads: a tiny receive window fills at once.

    It returns once the server has said ``: connected`` (the subscription is live), having read
    nothing more."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET /api/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    sock.settimeout(10)
    received = b""
    while b": connected" not in received:
        chunk = sock.recv(256)
        assert chunk, f"the stream closed before it opened: {received!r}"
        received += chunk
    return sock


def test_a_slow_client_is_dropped_without_blocking_others(tmp_path: Path) -> None:
    with serve_api(tmp_path, os.urandom(32).hex(), sse_queue_size=64) as api:
        slow = _raw_stream(api.server.port, api.tokens["a"])
        try:
            with SseReader(api.base_url, api.tokens["a"]) as fast:
                count, blob = 2500, "x" * 4000

                async def burst() -> None:
                    for n in range(count):
                        await api.app.state.ctx.bus.publish(Event("bulk", ORG_A, {"n": n, "blob": blob}))
                        if n % 2 == 0:
                            # The pace of the burst is part of the test: the fast client's pump gets
                            # a turn and keeps up, while the client that never reads falls behind.
                            await asyncio.sleep(0.001)

                api.server.call(burst())
                fast.wait_for(lambda e: e["data"]["data"].get("n") == count - 1, timeout=30)
                assert len([e for e in fast.events if e["event"] == "bulk"]) == count
            # The slow client was cut off: its stream ends with the "dropped" comment.
            slow.settimeout(10)
            received = b""
            while b": dropped" not in received[-(1 << 16) :] and (chunk := slow.recv(1 << 20)):
                received += chunk
            assert b": dropped" in received
        finally:
            slow.close()
        log_file = api.runtime.settings.log_file
        assert log_file is not None and "slow event stream client dropped" in log_file.read_text()
