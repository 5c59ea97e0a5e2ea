"""The API under test, served by uvicorn on a free loopback port in a thread of its own, and the
clients that drive it over real HTTP (httpx, and a small SSE reader)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI

from claude_pool.core.logs import configure_logging
from claude_pool.core.settings import Secret
from claude_pool.events.bus import Event
from claude_pool.http import ApiTokens, create_app
from claude_pool.runtime import Runtime
from claude_pool.simulator import RunningSimulator, RunningSlackSimulator, Scenario, SlackConfig
from tests.plugins.runtimes import TRUSTING_LIMITS, simulated_settings

__all__ = ["ApiServer", "SseReader", "UvicornThread", "iter_routes", "serve_api"]

ORG_A, ORG_B = "org-a", "org-b"
LIVE = "test.live"  # the marker ``SseReader.wait_until_live`` publishes
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UvicornThread:
    """uvicorn on its own thread and event loop; ``stop`` shuts it down as Ctrl-C would."""

    def __init__(self, app: FastAPI) -> None:
        self.port = _free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._run, name="uvicorn-test", daemon=True)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's event loop (where its pool and bus live) and wait for it."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def start(self) -> UvicornThread:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)  # a bounded poll: uvicorn offers no event to wait on
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "uvicorn did not shut down"


@dataclass
class ApiServer:
    base_url: str
    runtime: Runtime
    app: FastAPI
    sim: RunningSimulator
    slack: RunningSlackSimulator
    tokens: dict[str, str]  # "admin" (every organization), "a", "b", "ab"
    server: UvicornThread
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, who: str | None = "admin", **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        client = httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)
        self._clients.append(client)
        return client

    def close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    def publish(self, event: Event) -> Event:
        """Publish on the server's own bus, as a sweep or a breaker in the server would."""
        return self.server.call(self.app.state.ctx.bus.publish(event))

    def register(self, client: httpx.Client, org: str, key: str, name: str, **extra: Any) -> dict[str, Any]:
        body = {"organizationId": org, "name": name, "apiKey": key, "tier": "pro", **extra}
        response = client.post("/api/v1/admin/claude-accounts", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


@contextlib.contextmanager
def serve_api(
    home: Path,
    encryption_key: str,
    *,
    scenario: Scenario | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    redis_prefix: str = "claude-pool",
    heartbeat: float = 0.2,
    sse_queue_size: int = 1000,
    **settings: Any,
) -> Iterator[ApiServer]:
    """Simulators, a runtime on a migrated database, and the API serving it; ``settings`` are
    other fields of the runtime's ``Settings`` (the Slack commands' secret and mapping...)."""
    scenario = scenario or Scenario.uniform(accounts=4, rpm=10_000, itpm=10_000_000, otpm=2_000_000, seed=0)
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(RunningSimulator(scenario))
        slack = stack.enter_context(RunningSlackSimulator(SlackConfig(rate_per_channel=1000, burst=1000)))
        settings = simulated_settings(
            home,
            sim.base_url,
            encryption_key,
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            slack_bot_token=Secret(slack.token),
            slack_base_url=slack.base_url,
            log_file=home / "app.log",
            **settings,
        )
        runtime = Runtime(settings=settings, config=TRUSTING_LIMITS)
        stack.callback(runtime.close)
        runtime.db.upgrade()
        configure_logging(settings, console=False)
        tokens = {name: secrets.token_urlsafe(24) for name in ("admin", "a", "b", "ab")}
        scopes = {
            tokens["admin"]: "*",
            tokens["a"]: [ORG_A],
            tokens["b"]: [ORG_B],
            tokens["ab"]: [ORG_A, ORG_B],
        }
        app = create_app(
            runtime,
            tokens=ApiTokens.parse(json.dumps(scopes)),
            heartbeat_seconds=heartbeat,
            sse_queue_size=sse_queue_size,
            drain_seconds=5,
        )
        server = UvicornThread(app).start()
        stack.callback(server.stop)
        api = ApiServer(server.base_url, runtime, app, sim, slack, tokens, server)
        stack.callback(api.close_clients)
        yield api


def iter_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, through FastAPI's lazily included routers."""
    for route in app.routes:
        contexts = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        for ctx in contexts:
            original = getattr(ctx, "original_route", ctx)
            for method in sorted(getattr(original, "methods", None) or ()):
                if method != "HEAD":
                    yield method, ctx.path


class SseReader:
    """Reads ``GET /api/events/stream`` on a thread: ``events`` fills as they arrive.

    The server's heartbeat (a ``: ping`` line every few tenths of a second in tests) wakes the
    reader regularly, so ``stop`` ends it within one heartbeat."""

    def __init__(
        self, base_url: str, token: str, *, last_event_id: str | None = None, path: str = "/api/events/stream"
    ) -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=httpx.Timeout(10.0))
        self._path = path
        self.events: list[dict[str, Any]] = []
        self.comments: list[str] = []
        self.status: int | None = None
        self.connected = threading.Event()
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> SseReader:
        self._thread.start()
        assert self.connected.wait(10), (
            f"the event stream did not open (status {self.status}, {self.error!r})"
        )
        return self

    def _read(self) -> None:
        try:
            with self._client.stream("GET", self._path) as response:
                self.status = response.status_code
                if response.status_code != 200:
                    response.read()
                    self.connected.set()
                    return
                current: dict[str, Any] = {}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.comments.append(line)
                        if line.startswith(": connected"):
                            self.connected.set()
                    elif line.startswith(("id:", "event:", "data:")):
                        name, _, value = line.partition(":")
                        current[name] = value.strip()
                    elif not line and current:
                        current["data"] = json.loads(current["data"])
                        self.events.append(current)
                        current = {}
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # reported to the test through ``error``
            self.error = exc
        finally:
            self.connected.set()
            self.ended.set()

    def _first(self, items: list[T], predicate: Callable[[T], bool], timeout: float) -> T | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in list(items):
                if predicate(item):
                    return item
            if self.ended.is_set():
                break
            time.sleep(0.02)  # a bounded poll of what the reader thread has read so far
        return None

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        """The first event read that matches, waited for at most ``timeout`` seconds."""
        event = self._first(self.events, predicate, timeout)
        if event is None:
            raise AssertionError(
                f"no matching event; got {[e.get('event') for e in self.events]} ({self.error!r})"
            )
        return event

    def wait_for_comment(self, prefix: str, timeout: float = 10.0) -> str:
        """The first comment line read that starts with ``prefix`` (``: ping``), waited for likewise."""
        comment = self._first(self.comments, lambda c: c.startswith(prefix), timeout)
        if comment is None:
            raise AssertionError(f"no comment {prefix!r}; got {self.comments[-5:]} ({self.error!r})")
        return comment

    def wait_until_live(
        self, publish: Callable[[Event], object], organization_id: str | None, timeout: float = 10.0
    ) -> None:
        """On a Redis bus the subscription reads its starting point a round trip after the stream
        says ``: connected``; publish a ``test.live`` marker until the stream shows one, so that
        whatever is published next is surely on it."""
        deadline = time.monotonic() + timeout
        while True:
            publish(Event(LIVE, organization_id, {}))
            try:
                self.wait_for(lambda e: e["event"] == LIVE, timeout=0.25)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._client.close()

    def __enter__(self) -> SseReader:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
