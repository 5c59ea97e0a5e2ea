"""Running an aiohttp app: on the current loop (the CLI), or on a loop of its own in a background thread
(tests and benchmarks, where the caller's thread stays free for synchronous clients)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

__all__ = ["BackgroundServer", "bind_socket", "reset_connection", "start_app"]

T = TypeVar("T")
# Hanging handlers (time-out faults) must not hold a test's teardown for aiohttp's default 60 s.
_SHUTDOWN_TIMEOUT = 0.25


def reset_connection(request: web.BaseRequest) -> None:
    """Close the socket without an answer; SO_LINGER 0 makes it a TCP reset, as a dropped proxy does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def bind_socket(host: str, port: int) -> socket.socket:
    """Bound before the server starts, so the port (0 = any free one) is known at once."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


async def start_app(app: web.Application, sock: socket.socket) -> web.AppRunner:
    # No access log: formatting a line per request would cost more than the simulated request.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=1024).start()
    return runner


class BackgroundServer:
    """An app built and served on its own event loop in a daemon thread."""

    def __init__(
        self, app_factory: Callable[[], web.Application], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._factory = app_factory
        self._sock = bind_socket(host, port)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, name=f"sim-server-{self.port}", daemon=True)
        self._ready = concurrent.futures.Future[None]()

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner = self._loop.run_until_complete(start_app(self._factory(), self._sock))
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        # Handlers still running (a request hanging on a time-out fault) are cancelled and awaited:
        # left pending they would be reported as "Task was destroyed but it is pending" at exit.
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def start(self) -> None:
        self._thread.start()
        self._ready.result(timeout=30)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._sock.close()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the server's loop, between two requests, and return its result."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        future = concurrent.futures.Future[T]()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=30)
