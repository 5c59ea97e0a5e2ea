"""The alert outbox: every ``quota_alerts`` and ``account_alerts`` row not yet sent goes to Slack,
once, and none is lost (quota alerts first, then account alerts; each table oldest first).

A sweep sends rows with ``sent_at IS NULL``, oldest first. Before sending a row it *claims* it:

    UPDATE quota_alerts SET claimed_by = :me, claimed_until = :now + lease
     WHERE id = :id AND sent_at IS NULL AND (claimed_until IS NULL OR claimed_until < :now)

committed on its own; only the sweep whose update changed the row (rowcount 1) sends it. Two sweeps,
in one process or in several, can therefore never send the same row at the same time. ``sent_at``,
``slack_ts`` and ``slack_channel`` are written only after Slack accepted the message. A failure
increments ``send_attempts``, stores ``last_error`` (redacted), releases the claim and leaves the row
for a later sweep. A sweep that dies mid-send leaves its claim to expire (``lease_seconds``), and the
row is then sent by a later sweep: in that one case (Slack accepted, the process died before writing
``sent_at``) a message can arrive twice; it is never lost.

When Slack itself is unusable (down, rate limit beyond the wait we accept, token or channel wrong)
the sweep stops at the first such failure instead of charging an attempt to every other row: they
wait, untouched, for the next sweep. Without a Slack token nothing is sent and rows stay unsent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from claude_pool.core.errors import NotificationError
from claude_pool.core.logs import log_event
from claude_pool.core.redaction import redact
from claude_pool.quota.account_messages import account_alert_blocks, account_alert_text
from claude_pool.quota.slack import SlackNotifier
from claude_pool.storage import AccountAlert, ClaudeAccount, Database, QuotaAlert, utcnow

__all__ = ["AlertOutbox", "SendReport", "unsent_by_table"]

logger = logging.getLogger("claude_pool.quota")

# Failures that say Slack as a whole is unusable now: the next row would fail the same way.
_STOP_SWEEP = frozenset(
    {
        "connection_error",
        "client_error",
        "ratelimited",
        "not_configured",
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "account_inactive",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "fatal_error",
        "internal_error",
        "service_unavailable",
    }
)


@dataclass
class SendReport:
    """What one sweep did. ``pending`` rows were left for a later sweep without being tried."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0  # claimed by another sweep
    pending: int = 0
    enabled: bool = True
    errors: list[str] = field(default_factory=list)
    slack_ts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Feed:
    """One table the outbox sends from, and how one of its rows is posted."""

    model: type[QuotaAlert] | type[AccountAlert]
    what: str
    post: Callable[[SlackNotifier, Any, str | None], Awaitable[str]]

    @property
    def table(self) -> sa.Table:
        table: sa.Table = self.model.__table__  # type: ignore[union-attr]
        return table


async def _post_quota_alert(notifier: SlackNotifier, alert: QuotaAlert, name: str | None) -> str:
    return await notifier.post_alert(alert, account_name=name)


async def _post_account_alert(notifier: SlackNotifier, alert: AccountAlert, name: str | None) -> str:
    return await notifier.post(
        notifier.alert_channel,
        account_alert_text(alert, account_name=name),
        account_alert_blocks(alert, account_name=name),
    )


_FEEDS = (
    _Feed(QuotaAlert, "quota alert", _post_quota_alert),
    _Feed(AccountAlert, "account alert", _post_account_alert),
)


def unsent_by_table(db: Database, organization_id: str | None = None) -> dict[str, int]:
    """Alerts stored and not yet sent, per table (the outbox's depth), of one organization or all."""
    depth = {}
    with db.engine.connect() as conn:
        for feed in _FEEDS:
            t = feed.table.c
            query = sa.select(sa.func.count()).where(t.sent_at.is_(None))
            if organization_id is not None:
                query = query.where(t.organization_id == organization_id)
            depth[feed.table.name] = int(conn.execute(query).scalar_one())
    return depth


def _default_worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class AlertOutbox:
    def __init__(
        self,
        db: Database,
        notifier: SlackNotifier,
        *,
        lease_seconds: float = 300.0,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        # The lease must outlast one send: Slack's 429 waits (max_retries x max_wait) and time-outs.
        self.db = db
        self.notifier = notifier
        self.lease = timedelta(seconds=lease_seconds)
        self.worker_id = (worker_id or _default_worker_id())[:64]
        self.clock = clock

    async def send_unsent(self, limit: int = 100) -> SendReport:
        if not self.notifier.enabled:
            unsent = await asyncio.to_thread(self.count_unsent)
            if unsent:
                log_event(
                    logger,
                    logging.INFO,
                    "slack not configured: alerts stored and logged, not sent",
                    unsent=unsent,
                )
            return SendReport(pending=unsent, enabled=False)
        report = SendReport()
        for feed in _FEEDS:
            if not await self._send_feed(feed, limit, report):
                break  # Slack is unusable now: the other table waits for the next sweep as well
        return report

    async def _send_feed(self, feed: _Feed, limit: int, report: SendReport) -> bool:
        """Send ``feed``'s due rows; False when Slack as a whole failed and the sweep should stop."""
        due = await asyncio.to_thread(self._due_ids, feed, limit)
        for position, alert_id in enumerate(due):
            claimed = await asyncio.to_thread(self._claim, feed, alert_id)
            if claimed is None:
                report.skipped += 1
                continue
            alert, account_name = claimed
            try:
                ts = await feed.post(self.notifier, alert, account_name)
            except NotificationError as exc:
                report.failed += 1
                report.errors.append(exc.error or str(exc))
                await asyncio.to_thread(self._release_failed, feed, alert_id, exc)
                if (exc.error or "") in _STOP_SWEEP:
                    report.pending += len(due) - position - 1
                    return False
                continue
            await asyncio.to_thread(self._mark_sent, feed, alert_id, ts)
            report.sent += 1
            report.slack_ts.append(ts)
        return True

    def count_unsent(self) -> int:
        """Alerts of both tables not sent yet."""
        return sum(unsent_by_table(self.db).values())

    # -- steps (each its own short transaction) ---------------------------------------------------

    def _due_ids(self, feed: _Feed, limit: int) -> list[int]:
        t = feed.table.c
        now = self.clock()
        query = (
            sa.select(t.id)
            .where(t.sent_at.is_(None), sa.or_(t.claimed_until.is_(None), t.claimed_until < now))
            .order_by(t.created_at, t.id)
            .limit(limit)
        )
        with self.db.session() as session:
            return [int(i) for (i,) in session.execute(query)]

    def _claim(self, feed: _Feed, alert_id: int) -> tuple[Any, str | None] | None:
        table = feed.table
        t = table.c
        now = self.clock()
        claim = (
            sa.update(table)
            .where(
                t.id == alert_id,
                t.sent_at.is_(None),
                sa.or_(t.claimed_until.is_(None), t.claimed_until < now),
            )
            .values(claimed_by=self.worker_id, claimed_until=now + self.lease)
        )
        with self.db.session() as session:
            if session.execute(claim).rowcount != 1:  # type: ignore[attr-defined]
                return None
        accounts = ClaudeAccount.__table__.c  # type: ignore[attr-defined]
        query = (
            sa.select(table, accounts.name.label("account_name"))
            .select_from(table.outerjoin(ClaudeAccount.__table__, accounts.id == t.account_id))  # type: ignore[attr-defined]
            .where(t.id == alert_id)
        )
        with self.db.session() as session:
            row = session.execute(query).one()
        values = dict(row._mapping)
        name = values.pop("account_name", None)
        return feed.model(**values), name

    def _mark_sent(self, feed: _Feed, alert_id: int, ts: str) -> None:
        table = feed.table
        t = table.c
        done = (
            sa.update(table)
            .where(t.id == alert_id, t.sent_at.is_(None))
            .values(
                sent_at=self.clock(),
                slack_ts=ts,
                slack_channel=self.notifier.alert_channel[:100],
                send_attempts=t.send_attempts + 1,
                last_error=None,
                claimed_by=self.worker_id,
                claimed_until=None,
            )
        )
        with self.db.session() as session:
            changed = session.execute(done).rowcount  # type: ignore[attr-defined]
        if changed != 1:
            # Only possible when our lease ran out mid-send and another sweep sent it as well.
            log_event(
                logger, logging.WARNING, f"{feed.what} was already marked sent", alert_id=alert_id, slack_ts=ts
            )
        else:
            log_event(logger, logging.INFO, f"{feed.what} sent to slack", alert_id=alert_id, slack_ts=ts)

    def _release_failed(self, feed: _Feed, alert_id: int, exc: NotificationError) -> None:
        table = feed.table
        t = table.c
        error = redact(f"{exc.error or 'error'}: {exc}")[:500]
        failed = (
            sa.update(table)
            .where(t.id == alert_id, t.sent_at.is_(None), t.claimed_by == self.worker_id)
            .values(send_attempts=t.send_attempts + 1, last_error=error, claimed_by=None, claimed_until=None)
        )
        with self.db.session() as session:
            session.execute(failed)
        log_event(
            logger,
            logging.WARNING,
            f"{feed.what} not sent; left for a later sweep",
            alert_id=alert_id,
            error=exc.error,
            retry_after=exc.retry_after,
        )
