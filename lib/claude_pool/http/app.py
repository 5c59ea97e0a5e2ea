"""The HTTP API's application factory.

    app = create_app(Runtime.from_env())     # what ``claude-pool serve`` runs under uvicorn

The pool, the event bus and the Slack notifier are opened in the app's lifespan, on the server's
own event loop, and closed after running executions had a chance to finish.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from claude_pool.events.bus import EventBus, open_event_bus
from claude_pool.events.publisher import open_publishing_pool
from claude_pool.http import admin, events_sse, execute, gateway, health, metrics, slack_app
from claude_pool.http.auth import ApiTokens, AuthMiddleware, Principal, current_principal
from claude_pool.http.context import ApiContext
from claude_pool.http.direct_route import DirectRoute
from claude_pool.http.errors import install_error_handlers
from claude_pool.http.metrics import PoolMetrics
from claude_pool.pool.light_calls import LightCalls
from claude_pool.quota.account_listener import AccountAlertListener
from claude_pool.quota.slack import SlackNotifier
from claude_pool.records.executions import ExecutionStore
from claude_pool.runtime import Runtime

__all__ = ["API_VERSION", "create_app"]

API_VERSION = "1.0.0"
logger = logging.getLogger("claude_pool.http")

# FastAPI 0.150 traces, measures and logs every request through OpenTelemetry, and checks on each
# one whether a provider is configured. claude-pool has its own metrics (/metrics) and logs, and
# the check and its operation spans cost each request more than the routing does (measured on
# /v1/messages): off, where the FastAPI installed has the switch.
_NO_OPENTELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def create_app(
    runtime: Runtime,
    *,
    tokens: ApiTokens | None = None,
    bus: EventBus | None = None,
    slack: SlackNotifier | None = None,
    heartbeat_seconds: float = 15.0,
    sse_queue_size: int = 1000,
    drain_seconds: float = 10.0,
) -> FastAPI:
    """``tokens`` default to ``CLAUDE_POOL_API_TOKENS``; ``bus`` to Redis when ``REDIS_URL`` is set,
    else in-process. A bus or notifier given here is the caller's to close."""
    tokens = ApiTokens.from_env() if tokens is None else tokens
    if not len(tokens):
        logger.warning(
            "no API tokens configured (CLAUDE_POOL_API_TOKENS): every route but /health answers 401"
        )

    pool_metrics = PoolMetrics()  # one registry per app: two apps in a process never share counters
    lifespan = _lifespan(
        runtime,
        pool_metrics=pool_metrics,
        bus=bus,
        slack=slack,
        heartbeat_seconds=heartbeat_seconds,
        sse_queue_size=sse_queue_size,
        drain_seconds=drain_seconds,
    )
    app = FastAPI(
        **_NO_OPENTELEMETRY,
        title="claude-pool",
        version=API_VERSION,
        description="Pool Anthropic API accounts: admin API, execute endpoint, event stream, health.",
        lifespan=lifespan,
        # The schema is served below, behind a token like every route but /health.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    # Added first, so inside the authentication (the last added runs first).
    app.add_middleware(DirectRoute, method="POST", path="/v1/messages", endpoint=gateway.messages)
    app.add_middleware(AuthMiddleware, tokens=tokens)
    # The drop-in routes first: routes are matched in order, and each one tried before the right
    # one costs every request a few microseconds (measured: 40 routers ahead of a route added
    # 0.12 ms to it). POST /v1/messages itself never gets here (DirectRoute); its siblings
    # (count_tokens, models) come from the same clients.
    for module in (gateway, execute, admin, events_sse, health, metrics, slack_app):
        app.include_router(module.router)
    app.state.metrics = pool_metrics
    # Refuses a malformed SLACK_WORKSPACE_ORGS before the server starts.
    app.state.slack_commands = slack_app.SlackCommands.from_settings(runtime.settings)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_caller: Annotated[Principal, Depends(current_principal)]) -> JSONResponse:
        schema: dict[str, Any] = app.openapi()
        return JSONResponse(schema)

    return app


def _lifespan(
    runtime: Runtime,
    *,
    pool_metrics: PoolMetrics,
    bus: EventBus | None,
    slack: SlackNotifier | None,
    heartbeat_seconds: float,
    sse_queue_size: int,
    drain_seconds: float,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Open the pool, the bus and the notifier on the server's own loop; on shutdown give running
    executions ``drain_seconds`` to finish, then close what this app opened."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        event_bus = bus or open_event_bus(runtime.settings)
        alerts = AccountAlertListener(runtime.db)  # breaker and account trouble, for Slack
        pool = open_publishing_pool(
            runtime, event_bus, listeners=[alerts, pool_metrics], breaker_listeners=[alerts, pool_metrics]
        )
        pool_metrics.directory = pool.directory
        notifier = slack or SlackNotifier(runtime.settings)
        ctx = ApiContext(
            runtime=runtime,
            pool=pool,
            bus=event_bus,
            slack=notifier,
            executions=ExecutionStore(runtime.db),
            light_calls=LightCalls(pool),
            heartbeat_seconds=heartbeat_seconds,
            sse_queue_size=sse_queue_size,
        )
        app.state.ctx = ctx
        try:
            yield
        finally:
            await ctx.drain(drain_seconds)
            await pool.aclose()
            if bus is None:
                await event_bus.aclose()
            if slack is None:
                await notifier.aclose()

    return lifespan
