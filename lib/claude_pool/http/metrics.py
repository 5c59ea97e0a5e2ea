"""``GET /metrics``: the pool in Prometheus' text format (the standard ``prometheus-client``).

Two sources, one registry per server:

- what happens, counted as it happens by :class:`PoolMetrics`, a pool and breaker listener:
  requests (calls to Anthropic) per account and outcome, tokens, upstream 429s, fail-overs,
  failed delegations, breaker transitions, call and delegation latency, and how long each
  admitted call waited for its place in its account's queue;
- what is, read from the stores when Prometheus scrapes: breaker state, headroom and requests in
  flight per account, headroom per capacity group (the bucket that the accounts of one Anthropic
  organization share), the alert outbox's depth, and the admission refusals recorded by every
  worker (a refused request never reaches a listener: it is refused before any attempt).

Flow workers serve no HTTP: each keeps one :class:`PoolMetrics` (without the store reads) for the
process and pushes it to a Pushgateway (``PROMETHEUS_PUSHGATEWAY_URL``) after each task run.

Accounts are labelled by name and organization (redacted, in case a name looks like a key), never
by anything derived from a key. The route needs a token for every organization (``*``), since the
series name the accounts of all of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest, push_to_gateway
from prometheus_client.registry import Collector

from claude_pool.breaker import BreakerListener, State, Transition
from claude_pool.core.logs import log_event
from claude_pool.core.redaction import redact
from claude_pool.http.auth import Principal, current_principal
from claude_pool.http.context import ApiContext, get_context
from claude_pool.http.errors import ApiError
from claude_pool.maintenance.capacity_sync import CapacityRow, snapshot_pool
from claude_pool.pool import Pool
from claude_pool.pool.directory import AccountDirectory
from claude_pool.pool.listeners import PoolListener, Selected
from claude_pool.pool.models import AttemptRecord, DelegationRequest, DelegationResult
from claude_pool.quota.outbox import unsent_by_table
from claude_pool.storage import Database, ExecutionStatus, OrchestratorExecution

__all__ = ["BREAKER_STATE_VALUES", "PoolMetrics", "router"]

logger = logging.getLogger("claude_pool.http.metrics")
router = APIRouter(tags=["metrics"])

#: ``claude_pool_breaker_state``: one number per state, so that a graph can show it.
BREAKER_STATE_VALUES = {State.CLOSED.value: 0, State.HALF_OPEN.value: 1, State.OPEN.value: 2}
_ACCOUNT = ("organization", "account")
# The error types a refused delegation is recorded with, and the reason label each becomes.
_REFUSALS = {"NoAccountAvailable": "no_account", "DeadlineExceeded": "deadline"}
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# A first bucket at 0 counts the calls served at once; the queue is bounded by
# admission.maxQueueSeconds (30 s by default), a request's own bound by at most an hour.
_WAIT_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_GROUP_PREFIX = "group:"  # the bucket id of a capacity group (claude_pool.pool.directory)


def _label(value: str) -> str:
    return redact(value)[:100]


class PoolMetrics(PoolListener, BreakerListener):
    """The pool's metrics: a listener for the events, a collector for the state at scrape time."""

    def __init__(self, registry: CollectorRegistry | None = None, *, stores: bool = True) -> None:
        """``stores``: also expose what :meth:`refresh` reads from the stores (the server does;
        a flow worker pushes only what its own pool did)."""
        self.registry = registry or CollectorRegistry(auto_describe=True)
        # Names the accounts of breaker transitions (set once the pool is open, as for events).
        self.directory: AccountDirectory | None = None
        self._names: dict[str, tuple[str, str]] = {}  # account id -> (organization, name)
        self._snapshot = _Snapshot()
        if stores:
            self.registry.register(self._snapshot)
        self._define()

    def _define(self) -> None:
        r = self.registry
        self.requests = Counter(
            "claude_pool_requests",
            "Calls to Anthropic per account and outcome.",
            [*_ACCOUNT, "outcome"],
            registry=r,
        )
        self.tokens = Counter(
            "claude_pool_tokens",
            "Tokens of answered delegations per account.",
            [*_ACCOUNT, "kind"],
            registry=r,
        )
        self.rate_limited = Counter(
            "claude_pool_upstream_429", "HTTP 429 answers from Anthropic per account.", _ACCOUNT, registry=r
        )
        self.failovers = Counter(
            "claude_pool_failovers",
            "Attempts after a delegation's first (fail-overs and retries).",
            ["organization"],
            registry=r,
        )
        self.failures = Counter(
            "claude_pool_delegation_failures",
            "Delegations that failed for good, by error.",
            ["organization", "error"],
            registry=r,
        )
        self.transitions = Counter(
            "claude_pool_breaker_transitions",
            "Circuit breaker transitions per account.",
            [*_ACCOUNT, "to_state"],
            registry=r,
        )
        self.call_seconds = Histogram(
            "claude_pool_upstream_call_seconds",
            "Duration of one call to Anthropic.",
            [*_ACCOUNT, "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.admission_wait = Histogram(
            "claude_pool_admission_wait_seconds",
            "How long an admitted call waited for its place in its account's queue (0: at once).",
            _ACCOUNT,
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.execution_seconds = Histogram(
            "claude_pool_execution_seconds",
            "Duration of an answered delegation, admission and fail-overs included.",
            ["organization"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    # -- the events -----------------------------------------------------------------------------

    async def _account(self, account_id: str) -> tuple[str, str]:
        """(organization, name) of an account, from the pool's directory when not seen yet."""
        if account_id not in self._names and self.directory is not None:
            for account in await self.directory.all():
                self._names[account.id] = (_label(account.organization_id), _label(account.name))
        return self._names.get(account_id, ("", account_id))

    async def on_selection(self, request: DelegationRequest, selected: Selected) -> None:
        account = self._names[selected.account_id] = (
            _label(selected.organization_id),
            _label(selected.account_name),
        )
        self.admission_wait.labels(*account).observe(max(0.0, selected.wait_seconds))
        if selected.attempt > 1:
            self.failovers.labels(_label(request.organization_id)).inc()

    async def on_attempt(self, request: DelegationRequest, attempt: AttemptRecord) -> None:
        organization, name = await self._account(attempt.account_id)
        self.requests.labels(organization, name, attempt.outcome).inc()
        self.call_seconds.labels(organization, name, attempt.outcome).observe(attempt.latency_ms / 1000)
        if attempt.status_code == 429:
            self.rate_limited.labels(organization, name).inc()

    async def on_result(self, request: DelegationRequest, result: DelegationResult) -> None:
        organization, name = _label(request.organization_id), _label(result.account_name)
        self.tokens.labels(organization, name, "input").inc(result.usage.input_tokens)
        self.tokens.labels(organization, name, "output").inc(result.usage.output_tokens)
        self.execution_seconds.labels(organization).observe(result.latency_ms / 1000)

    async def on_failure(self, request: DelegationRequest, error: BaseException) -> None:
        self.failures.labels(_label(request.organization_id), type(error).__name__).inc()

    async def on_transition(self, transition: Transition) -> None:
        organization, name = await self._account(transition.account_id)
        self.transitions.labels(organization, name, transition.to_state.value).inc()

    # -- the state, read when scraped -----------------------------------------------------------

    async def refresh(self, pool: Pool, db: Database) -> None:
        """Read the stores for the next exposition; a store that does not answer leaves its series
        out (and says so in ``claude_pool_scrape_errors``) rather than failing the scrape."""
        rows: list[CapacityRow] | None
        stored: _Stored | None
        try:
            rows = await snapshot_pool(pool)
        except Exception as exc:  # the scrape must still answer: the counters are worth having
            log_event(logger, logging.WARNING, "metrics: capacity view failed", error=type(exc).__name__)
            rows = None
        try:
            stored = await asyncio.to_thread(_read_database, db)
        except Exception as exc:
            log_event(logger, logging.WARNING, "metrics: database read failed", error=type(exc).__name__)
            stored = None
        for row in rows or ():
            self._names[row.account_id] = (_label(row.organization_id), _label(row.account_name))
        self._snapshot.rows, self._snapshot.stored = rows, stored

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def push(self, gateway: str, *, job: str = "claude-pool-worker", instance: str | None = None) -> bool:
        """Replace this process's series on a Prometheus Pushgateway (grouped by ``instance``,
        host and pid by default, so each worker's counters only ever grow); False, logged, when
        the gateway does not take them: metrics never fail the work they describe."""
        instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        try:
            push_to_gateway(
                gateway, job=job, grouping_key={"instance": instance}, registry=self.registry, timeout=10
            )
        except OSError as exc:
            log_event(
                logger, logging.WARNING, "metrics: pushgateway refused the push", error=type(exc).__name__
            )
            return False
        return True


@dataclass(frozen=True)
class _Stored:
    outbox_depth: dict[str, int]
    refusals: dict[tuple[str, str], int]  # (organization, reason) -> delegations refused


def _read_database(db: Database) -> _Stored:
    """The outbox's depth, and the refusals recorded in ``orchestrator_executions`` by every
    worker (the HTTP API's and the flows')."""
    t = OrchestratorExecution.__table__.c  # type: ignore[attr-defined]
    query = (
        sa.select(t.organization_id, t.error_type, sa.func.count())
        .where(t.status == ExecutionStatus.FAILED, t.error_type.in_(_REFUSALS))
        .group_by(t.organization_id, t.error_type)
    )
    with db.engine.connect() as conn:
        refusals = {(str(org), _REFUSALS[str(error)]): int(n) for org, error, n in conn.execute(query)}
    return _Stored(unsent_by_table(db), refusals)


class _Snapshot(Collector):
    """The stores as last read by :meth:`PoolMetrics.refresh`."""

    def __init__(self) -> None:
        self.rows: list[CapacityRow] | None = None
        self.stored: _Stored | None = None

    def describe(self) -> list[Metric]:
        return []  # series appear only once the stores were read

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "claude_pool_scrape_errors", "Stores that did not answer at the last scrape.", labels=["source"]
        )
        errors.add_metric(["capacity"], 0 if self.rows is not None else 1)
        errors.add_metric(["database"], 0 if self.stored is not None else 1)
        yield errors
        if self.rows is not None:
            yield from _account_gauges(self.rows)
        if self.stored is not None:
            yield from _stored_metrics(self.stored)


def _stored_metrics(stored: _Stored) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "claude_pool_alert_outbox_depth", "Alerts stored and not yet sent to Slack.", labels=["table"]
    )
    for table, count in sorted(stored.outbox_depth.items()):
        depth.add_metric([table], count)
    refusals = CounterMetricFamily(
        "claude_pool_admission_refusals",
        "Delegations refused for want of an account that could serve in time (all workers).",
        labels=["organization", "reason"],
    )
    for (organization, reason), count in sorted(stored.refusals.items()):
        refusals.add_metric([_label(organization), reason], count)
    yield from (depth, refusals)


def _account_gauges(rows: list[CapacityRow]) -> Iterator[Metric]:
    labels = list(_ACCOUNT)
    state = GaugeMetricFamily(
        "claude_pool_breaker_state",
        "Circuit breaker per account: 0 closed, 1 half-open, 2 open.",
        labels=labels,
    )
    headroom = GaugeMetricFamily(
        "claude_pool_headroom_ratio",
        "Share of the tightest per-minute limit still free, per account.",
        labels=labels,
    )
    in_flight = GaugeMetricFamily("claude_pool_in_flight", "Calls in flight per account.", labels=labels)
    active = GaugeMetricFamily(
        "claude_pool_account_active",
        "1 when the account is active, 0 when set aside.",
        labels=[*labels, "status"],
    )
    for row in rows:
        account = [_label(row.organization_id), _label(row.account_name)]
        state.add_metric(account, BREAKER_STATE_VALUES.get(row.breaker_state, 0))
        headroom.add_metric(account, row.headroom)
        in_flight.add_metric(account, row.in_flight)
        active.add_metric([*account, row.status], 1 if row.status == "active" else 0)
    yield from (state, headroom, in_flight, active, _group_headroom(rows))


def _group_headroom(rows: list[CapacityRow]) -> GaugeMetricFamily:
    """The accounts of a capacity group share one bucket: its headroom is theirs (the least any of
    them reports, should their configured limits differ). Accounts without a group are the
    per-account series only."""
    groups: dict[str, float] = {}
    for row in rows:
        if row.bucket_id.startswith(_GROUP_PREFIX):
            group = _label(row.bucket_id.removeprefix(_GROUP_PREFIX))
            groups[group] = min(groups.get(group, 1.0), row.headroom)
    family = GaugeMetricFamily(
        "claude_pool_capacity_group_headroom_ratio",
        "Share of the tightest per-minute limit still free, per capacity group (shared bucket).",
        labels=["group"],
    )
    for group, value in sorted(groups.items()):
        family.add_metric([group], value)
    return family


@router.get("/metrics", include_in_schema=False)
async def metrics(
    request: Request,
    ctx: Annotated[ApiContext, Depends(get_context)],
    caller: Annotated[Principal, Depends(current_principal)],
) -> Response:
    if not caller.is_global:
        raise ApiError(403, "forbidden", "/metrics names the accounts of every organization: use a '*' token")
    pool_metrics = getattr(request.app.state, "metrics", None)
    if not isinstance(pool_metrics, PoolMetrics):
        raise ApiError(503, "unavailable", "metrics are not collected by this server")
    await pool_metrics.refresh(ctx.pool, ctx.runtime.db)
    return Response(pool_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
