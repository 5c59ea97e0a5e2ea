"""The route that carries the volume, reached without FastAPI's per-request machinery.

FastAPI matches a request against the routes, wraps it in its exception and exit-stack layers and
solves the endpoint's dependencies before the endpoint runs: about 0.3 ms of an idle server's time
per request, measured on ``POST /v1/messages``, a tenth of what the whole gateway adds to a call.
That endpoint declares no dependencies and answers every refusal itself, so this middleware,
installed inside the authentication, hands it its requests directly. The route stays declared on
its router, where the schema and any other method still find it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DirectRoute"]

Endpoint = Callable[[Request], Awaitable[Response]]


class DirectRoute:
    """Sends ``method path`` (exactly) to ``endpoint``; every other request to ``app``."""

    def __init__(self, app: ASGIApp, *, method: str, path: str, endpoint: Endpoint) -> None:
        self.app = app
        self.method = method
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != self.method:
            await self.app(scope, receive, send)
            return
        response = await self.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)
