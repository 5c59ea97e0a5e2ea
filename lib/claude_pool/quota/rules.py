"""Quota rules (DESIGN.md 4.5): what is observed, in which window, and which alerts that raises.

Metrics and their windows (all UTC):

* ``requests_per_minute``, ``input_tokens_per_minute``, ``output_tokens_per_minute``: from the live
  capacity view; usage = ``1 - level / limit`` of the account's bucket, window = the minute
  (``2026-11-26T09:41``). Accounts that share a capacity group share one bucket, so each of them
  reports the group's usage and each gets its own alert (the message names the account; the
  ``bucket_id`` of the observation says the bucket is shared).
* ``daily_token_budget`` (window ``2026-11-26``) and ``monthly_token_budget`` (window ``2026-11``),
  where the account or its tier sets one: input + output tokens of the account's succeeded
  executions that finished in the window.
* ``monthly_spend_budget_usd`` (window ``2026-11``): the same executions priced by the config's
  ``pricing`` (input, output, cache writes and cache reads, each at its model's price). Tokens of a
  model without a price cannot be counted: each sweep logs them, with the fix, as a warning.

Each (account, metric, threshold, kind, window) raises exactly one ``quota_alerts`` row however many
evaluators see it: rows are inserted with ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` against the
table's unique constraint, so the database picks the one winner and only the winner logs and
publishes. Every threshold crossed gets its own row: 0.97 raises 80 % and 95 %, and an earlier 80 %
never silences a later 95 %.

Recovery (``announce_recovery``): when usage is below the lowest threshold and the account had a
threshold alert for that metric in the current or the previous window, one ``kind="recovery"`` row
is raised whose ``window`` is the window *of the alert it resolves* (the current one when both have
alerts) and whose threshold is the lowest threshold. Keying the recovery on the alerted window, not
on the window in which the recovery was seen, makes it unique even when two sweeps on either side
of a minute boundary both see it; a budget alert of yesterday recovers when today's usage starts
again from zero. Sweeps must therefore run at least once per window for per-minute recoveries to be
seen (the default sweep interval is 60 s).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from claude_pool.accounts.registry import effective_limits
from claude_pool.capacity import BucketView
from claude_pool.core.config import AlertsConfig, PoolConfig
from claude_pool.core.logs import log_event
from claude_pool.events.bus import Event, EventBus
from claude_pool.storage import (
    ClaudeAccount,
    Database,
    ExecutionStatus,
    OrchestratorExecution,
    QuotaAlert,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = [
    "BUDGET_METRICS",
    "KIND_RECOVERY",
    "KIND_THRESHOLD",
    "PER_MINUTE_METRICS",
    "QuotaEvaluator",
    "QuotaObservation",
    "SpendUsage",
    "alert_event",
    "budget_observations",
    "budget_usage",
    "observations_from_views",
    "previous_window",
    "spend_usage",
    "window_bounds",
    "window_for",
]

logger = logging.getLogger("claude_pool.quota")

KIND_THRESHOLD = "threshold"
KIND_RECOVERY = "recovery"

RPM, ITPM, OTPM = "requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute"
DAILY, MONTHLY = "daily_token_budget", "monthly_token_budget"
MONTHLY_SPEND = "monthly_spend_budget_usd"
PER_MINUTE_METRICS = (RPM, ITPM, OTPM)
BUDGET_METRICS = (DAILY, MONTHLY, MONTHLY_SPEND)
_PERIOD = {RPM: "minute", ITPM: "minute", OTPM: "minute", DAILY: "day", MONTHLY: "month", MONTHLY_SPEND: "month"}
_FORMAT = {"minute": "%Y-%m-%dT%H:%M", "day": "%Y-%m-%d", "month": "%Y-%m"}
_UNIQUE = ("account_id", "metric", "threshold", "kind", "window")
# Rows per INSERT statement: well below SQLite's bound-parameter limit (15 columns a row).
_CHUNK = 500


# ---- windows -----------------------------------------------------------------------------------


def window_for(metric: str, at: datetime) -> str:
    """The window ``at`` falls in for ``metric`` (UTC)."""
    return at.astimezone(UTC).strftime(_FORMAT[_PERIOD[metric]])


def window_bounds(metric: str, window: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of a window, aware UTC."""
    period = _PERIOD[metric]
    start = datetime.strptime(window, _FORMAT[period]).replace(tzinfo=UTC)
    if period == "minute":
        return start, start + timedelta(minutes=1)
    if period == "day":
        return start, start + timedelta(days=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def previous_window(metric: str, window: str) -> str | None:
    """The window just before ``window``; ``None`` for a metric without windows known here."""
    if metric not in _PERIOD:
        return None
    start, _ = window_bounds(metric, window)
    return window_for(metric, start - timedelta(microseconds=1))


# ---- observations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaObservation:
    """How much of one limit an account has used in one window."""

    account_id: str
    organization_id: str
    metric: str
    observed: float
    limit: float
    window: str
    account_name: str | None = None
    #: the capacity bucket behind a per-minute metric (``group:...`` when shared by several accounts)
    bucket_id: str | None = None

    @property
    def fraction(self) -> float:
        return self.observed / self.limit if self.limit > 0 else 0.0


class AccountLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def organization_id(self) -> str: ...


def observations_from_views(
    views: Iterable[BucketView], accounts: Iterable[AccountLike]
) -> list[QuotaObservation]:
    """Per-minute usage from the capacity view (pure: no I/O). ``accounts`` are ``PoolAccount`` or
    ``ClaudeAccount`` rows; views of accounts not among them are ignored, and so are views whose
    levels are an assumption (a cold bucket not calibrated yet), not a measure of use."""
    by_id = {a.id: a for a in accounts}
    observations = []
    for view in views:
        account = by_id.get(view.account_id)
        if account is None or not view.levels_known:
            continue
        window = window_for(RPM, datetime.fromtimestamp(view.observed_at, UTC))
        for metric, level, limit in (
            (RPM, view.requests, view.limits.rpm),
            (ITPM, view.input_tokens, view.limits.itpm),
            (OTPM, view.output_tokens, view.limits.otpm),
        ):
            observations.append(
                QuotaObservation(
                    account_id=account.id,
                    organization_id=account.organization_id,
                    account_name=account.name,
                    metric=metric,
                    # A level below zero (a reservation corrected upwards) is usage above the limit.
                    observed=max(0.0, float(limit) - float(level)),
                    limit=float(limit),
                    window=window,
                    bucket_id=view.bucket_id,
                )
            )
    return observations


_EX = OrchestratorExecution.__table__.c  # type: ignore[attr-defined]


def _succeeded_within(account_ids: Sequence[str], start: datetime, end: datetime) -> list[Any]:
    """What budgets count: succeeded executions of these accounts, finished in ``[start, end)``."""
    finished = sa.func.coalesce(_EX.finished_at, _EX.created_at)
    return [
        _EX.status == ExecutionStatus.SUCCEEDED,
        _EX.account_id.in_(list(account_ids)),
        finished >= sa.bindparam("start", start, type_=_EX.created_at.type),
        finished < sa.bindparam("end", end, type_=_EX.created_at.type),
    ]


def budget_usage(db: Database, account_ids: Sequence[str], start: datetime, end: datetime) -> dict[str, int]:
    """Input + output tokens of succeeded executions per account, finished in ``[start, end)``."""
    if not account_ids:
        return {}
    tokens = sa.func.coalesce(_EX.input_tokens, 0) + sa.func.coalesce(_EX.output_tokens, 0)
    query = (
        sa.select(_EX.account_id, sa.func.sum(tokens))
        .where(*_succeeded_within(account_ids, start, end))
        .group_by(_EX.account_id)
    )
    with db.session() as session:
        return {str(a): int(total or 0) for a, total in session.execute(query)}


@dataclass(frozen=True)
class SpendUsage:
    usd: dict[str, float]  # account id -> US dollars spent in the window
    unpriced: dict[str, int]  # model without a price -> its tokens in the window (not counted)


def spend_usage(
    db: Database, config: PoolConfig, account_ids: Sequence[str], start: datetime, end: datetime
) -> SpendUsage:
    """What the succeeded executions of each account, finished in ``[start, end)``, cost."""
    if not account_ids:
        return SpendUsage({}, {})
    sums = [
        sa.func.sum(sa.func.coalesce(column, 0))
        for column in (_EX.input_tokens, _EX.output_tokens, _EX.cache_creation_input_tokens, _EX.cache_read_input_tokens)
    ]
    query = (
        sa.select(_EX.account_id, _EX.model, *sums)
        .where(*_succeeded_within(account_ids, start, end))
        .group_by(_EX.account_id, _EX.model)
    )
    usd: dict[str, float] = {}
    unpriced: dict[str, int] = {}
    with db.session() as session:
        for account_id, model, inp, out, write, read in session.execute(query):
            tokens = [int(v or 0) for v in (inp, out, write, read)]
            price = config.price_for(str(model))
            if price is None:
                unpriced[str(model)] = unpriced.get(str(model), 0) + sum(tokens)
                continue
            cost = price.cost_usd(input_tokens=tokens[0], output_tokens=tokens[1],
                                  cache_write_tokens=tokens[2], cache_read_tokens=tokens[3])
            usd[str(account_id)] = usd.get(str(account_id), 0.0) + cost
    return SpendUsage(usd, unpriced)


def budget_observations(
    db: Database,
    config: PoolConfig,
    *,
    accounts: Sequence[ClaudeAccount] | None = None,
    now: datetime | None = None,
) -> list[QuotaObservation]:
    """Daily and monthly token budgets and monthly spend budgets of every account that has one
    (its own or its tier's)."""
    now = now or utcnow()
    if accounts is None:
        with db.session() as session:
            accounts = list(session.exec(select(ClaudeAccount)))
    observations = []
    for metric in BUDGET_METRICS:
        budgets = {a.id: (a, getattr(effective_limits(a, config), metric)) for a in accounts}
        budgets = {k: v for k, v in budgets.items() if v[1]}
        if not budgets:
            continue
        window = window_for(metric, now)
        used: dict[str, float] | dict[str, int]
        if metric == MONTHLY_SPEND:
            spend = spend_usage(db, config, list(budgets), *window_bounds(metric, window))
            used = spend.usd
            if spend.unpriced:
                log_event(
                    logger, logging.WARNING, "spend budgets miss some usage: models without a price",
                    window=window,
                    models=", ".join(f"{m} ({n:,} tokens)" for m, n in sorted(spend.unpriced.items())),
                    fix="add each model's price under pricing in the config file",
                )
        else:
            used = budget_usage(db, list(budgets), *window_bounds(metric, window))
        for account_id, (account, budget) in budgets.items():
            observations.append(
                QuotaObservation(
                    account_id=account_id,
                    organization_id=account.organization_id,
                    account_name=account.name,
                    metric=metric,
                    observed=float(used.get(account_id, 0)),
                    limit=float(budget),
                    window=window,
                )
            )
    return observations


# ---- evaluation --------------------------------------------------------------------------------


class QuotaEvaluator:
    """Turns observations into ``quota_alerts`` rows, each exactly once (see the module docstring).

    ``evaluate`` is synchronous (it is database work; call it from a thread or a sync task);
    ``aevaluate`` runs it in a thread and then publishes one ``quota.alert`` event per new row on
    ``bus`` (``data.kind`` tells an alert from a recovery)."""

    def __init__(
        self, db: Database, config: PoolConfig | AlertsConfig, *, bus: EventBus | None = None
    ) -> None:
        self.db = db
        self.alerts = config.alerts if isinstance(config, PoolConfig) else config
        self.bus = bus

    def rows_for(self, observations: Iterable[QuotaObservation]) -> list[dict[str, Any]]:
        """The threshold rows the observations call for (without recoveries); pure."""
        now = utcnow()
        rows = []
        for obs in observations:
            for threshold in self.alerts.thresholds:
                if obs.fraction >= threshold:
                    rows.append(_row(obs, threshold, KIND_THRESHOLD, obs.window, now))
        return rows

    def evaluate(self, observations: Iterable[QuotaObservation]) -> list[QuotaAlert]:
        """Insert what the observations raise; returns only the rows this call created."""
        observations = list(observations)
        rows = self.rows_for(observations)
        if self.alerts.announce_recovery:
            rows += self._recovery_rows(observations)
        names = {o.account_id: o.account_name for o in observations}
        created = self._insert_new(rows)
        for alert in created:
            _log_alert(alert, names.get(alert.account_id))
        return created

    async def aevaluate(self, observations: Iterable[QuotaObservation]) -> list[QuotaAlert]:
        observations = list(observations)
        created = await asyncio.to_thread(self.evaluate, observations)
        if self.bus is not None:
            names = {o.account_id: o.account_name for o in observations}
            for alert in created:
                await self.bus.publish(alert_event(alert, names.get(alert.account_id)))
        return created

    # -- recovery ----------------------------------------------------------------------------

    def _recovery_rows(self, observations: Sequence[QuotaObservation]) -> list[dict[str, Any]]:
        lowest = self.alerts.thresholds[0]
        low = [o for o in observations if o.fraction < lowest]
        if not low:
            return []
        windows = {o.window for o in low} | {w for o in low if (w := previous_window(o.metric, o.window))}
        qa = QuotaAlert.__table__.c  # type: ignore[attr-defined]
        query = sa.select(qa.account_id, qa.metric, qa.window).where(
            qa.kind == KIND_THRESHOLD,
            qa.account_id.in_({o.account_id for o in low}),
            qa.metric.in_({o.metric for o in low}),
            qa.window.in_(windows),
        )
        with self.db.session() as session:
            alerted = {(a, m, w) for a, m, w in session.execute(query)}
        now = utcnow()
        rows = []
        for obs in low:
            for window in (obs.window, previous_window(obs.metric, obs.window)):
                if (obs.account_id, obs.metric, window) in alerted:
                    rows.append(_row(obs, lowest, KIND_RECOVERY, window, now))  # type: ignore[arg-type]
                    break
        return rows

    # -- insertion ---------------------------------------------------------------------------

    def _insert_new(self, rows: list[dict[str, Any]]) -> list[QuotaAlert]:
        if not rows:
            return []
        # One order for every evaluator: concurrent PostgreSQL transactions then wait for each other
        # on the same key instead of deadlocking on two keys taken in opposite orders.
        rows = sorted(
            {tuple(r[k] for k in _UNIQUE): r for r in rows}.values(),
            key=lambda r: tuple(r[k] for k in _UNIQUE),
        )
        if self.db.dialect not in ("postgresql", "sqlite"):
            return self._insert_one_by_one(rows)
        table = QuotaAlert.__table__  # type: ignore[attr-defined]
        # Each dialect has its own Insert class (and its own on_conflict_do_nothing).
        into: postgresql.Insert | sqlite.Insert
        if self.db.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            into = postgresql_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            into = sqlite_insert(table)
        created: list[QuotaAlert] = []
        for start in range(0, len(rows), _CHUNK):
            stmt = (
                into.values(rows[start : start + _CHUNK])
                .on_conflict_do_nothing(index_elements=list(_UNIQUE))
                .returning(*table.c)
            )
            with self.db.session() as session:
                created += [QuotaAlert(**dict(r._mapping)) for r in session.execute(stmt)]
        created.sort(key=lambda a: (a.account_id, a.metric, a.window, a.threshold))
        return created

    def _insert_one_by_one(self, rows: list[dict[str, Any]]) -> list[QuotaAlert]:
        # Other databases: each row in its own transaction; the unique constraint refuses the losers.
        table = QuotaAlert.__table__  # type: ignore[attr-defined]
        created = []
        for row in rows:
            try:
                with self.db.engine.begin() as conn:
                    result = conn.execute(sa.insert(table).values(row))
                    row_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
            except IntegrityError:
                continue
            created.append(QuotaAlert(id=row_id, **row))
        return created


def _row(obs: QuotaObservation, threshold: float, kind: str, window: str, now: datetime) -> dict[str, Any]:
    return {
        "account_id": obs.account_id,
        "organization_id": obs.organization_id,
        "metric": obs.metric,
        "threshold": float(threshold),
        "kind": kind,
        "window": window,
        "observed": float(obs.observed),
        "limit": float(obs.limit),
        "fraction": float(obs.fraction),
        "created_at": now,
        "sent_at": None,
        "send_attempts": 0,
        "last_error": None,
        "slack_channel": None,
        "slack_ts": None,
    }


def _log_alert(alert: QuotaAlert, account_name: str | None) -> None:
    name = account_name or alert.account_id
    if alert.kind == KIND_RECOVERY:
        message = (
            f"quota recovered: {name} {alert.metric} back below {alert.threshold:.0%} "
            f"({alert.observed:g}/{alert.limit:g}) after window {alert.window}"
        )
        level = logging.INFO
    else:
        message = (
            f"quota alert: {name} {alert.metric} crossed {alert.threshold:.0%} "
            f"({alert.observed:g}/{alert.limit:g} = {alert.fraction:.1%}) in window {alert.window}"
        )
        level = logging.WARNING
    log_event(
        logger,
        level,
        message,
        alert_id=alert.id,
        account_id=alert.account_id,
        organization_id=alert.organization_id,
        metric=alert.metric,
        threshold=alert.threshold,
        kind=alert.kind,
        window=alert.window,
        observed=alert.observed,
        limit=alert.limit,
    )


def alert_event(alert: QuotaAlert, account_name: str | None = None) -> Event:
    return Event(
        "quota.alert",
        alert.organization_id,
        {
            "alert_id": alert.id,
            "account_id": alert.account_id,
            "account_name": account_name,
            "metric": alert.metric,
            "threshold": alert.threshold,
            "kind": alert.kind,
            "window": alert.window,
            "observed": alert.observed,
            "limit": alert.limit,
            "fraction": alert.fraction,
        },
    )
