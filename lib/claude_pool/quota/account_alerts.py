"""Account alerts: an account's trouble, stored for Slack once per incident, with a recovery note.

Five kinds, each an incident that starts and ends:

- ``breaker_open``: the circuit breaker opened (and ends when it closes again);
- ``credentials_rejected``: Anthropic refused the key (ends when the key is rotated or the account
  enabled again);
- ``budget_exhausted``: the spend cap was reached (ends when the cap resets or the account is
  enabled again);
- ``account_disabled``: an operator disabled the account (ends when it is enabled again);
- ``usage_drift``: Anthropic's usage report counts clearly more tokens on the account's key than
  the pool sent, so another client spends from it (raised and ended by capacity sync, see
  ``claude_pool.maintenance.usage_drift``).

Rows go to ``account_alerts``; :class:`~claude_pool.quota.outbox.AlertOutbox` sends them with the
quota alerts (stored first, sent once, never lost). An incident already open is not raised again,
however many workers see it; a recovery is stored only for an open incident.

A flapping account must not flood the channel: once an incident of a kind was announced for an
account in the last ``flap_window``, its further openings (and the closings of incidents that had no
message of their own) are counted into one ``digest`` row, updated while it waits to be sent, so a
sweep posts at most one digest per account and kind. Whether an incident is open is the balance of
all openings and closings stored, digests included: a change is counted once, however often a
worker or a sweep sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from claude_pool.core.logs import log_event
from claude_pool.core.redaction import redact
from claude_pool.storage import AccountAlert, AccountStatus, ClaudeAccount, Database, utcnow

__all__ = [
    "ACCOUNT_ALERT_KINDS",
    "KIND_BREAKER_OPEN",
    "KIND_BUDGET_EXHAUSTED",
    "KIND_CREDENTIALS_REJECTED",
    "KIND_DISABLED",
    "KIND_USAGE_DRIFT",
    "PHASE_DIGEST",
    "PHASE_INCIDENT",
    "PHASE_RECOVERY",
    "STATUS_KINDS",
    "AccountAlerts",
]

logger = logging.getLogger("claude_pool.quota")

KIND_BREAKER_OPEN = "breaker_open"
KIND_CREDENTIALS_REJECTED = "credentials_rejected"
KIND_BUDGET_EXHAUSTED = "budget_exhausted"
KIND_DISABLED = "account_disabled"
KIND_USAGE_DRIFT = "usage_drift"
ACCOUNT_ALERT_KINDS = (
    KIND_BREAKER_OPEN,
    KIND_CREDENTIALS_REJECTED,
    KIND_BUDGET_EXHAUSTED,
    KIND_DISABLED,
    KIND_USAGE_DRIFT,
)

PHASE_INCIDENT = "incident"
PHASE_RECOVERY = "recovery"
PHASE_DIGEST = "digest"

#: The account status that each status-borne kind stands for.
STATUS_KINDS = {
    AccountStatus.INVALID_CREDENTIALS: KIND_CREDENTIALS_REJECTED,
    AccountStatus.SPEND_EXHAUSTED: KIND_BUDGET_EXHAUSTED,
    AccountStatus.DISABLED: KIND_DISABLED,
}

_DETAIL_MAX = 1000


@dataclass(frozen=True)
class _Last:
    """Where one (account, kind) stands: its latest incident or recovery message, how many
    incidents were announced within the flap window, and whether an incident is open now."""

    phase: str | None
    sequence: int
    recent_incidents: int
    is_open: bool

    @property
    def announced_open(self) -> bool:
        """The open incident had a message of its own (rather than a line in a digest)."""
        return self.is_open and self.phase == PHASE_INCIDENT


class AccountAlerts:
    def __init__(
        self,
        db: Database,
        *,
        flap_window: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.flap_window = flap_window
        self.clock = clock
        self._table = AccountAlert.__table__  # type: ignore[attr-defined]

    # -- what happened ------------------------------------------------------------------------

    def incident(
        self, account_id: str, kind: str, detail: str | None = None, *, until: datetime | None = None
    ) -> AccountAlert | None:
        """``account_id`` got into trouble of ``kind``: the stored row (an incident or the digest it
        was counted into), or ``None`` when that incident is already open (or the account gone)."""
        return self._record(account_id, kind, PHASE_INCIDENT, detail, until)

    def recovery(self, account_id: str, kind: str, detail: str | None = None) -> AccountAlert | None:
        """The trouble of ``kind`` is over: the stored row, or ``None`` when none was open."""
        return self._record(account_id, kind, PHASE_RECOVERY, detail, None)

    def amend(self, alert_id: int, detail: str) -> bool:
        """Replace the detail of a row that no sweep has taken yet (True when it was)."""
        t = self._table.c
        now = self.clock()
        update = (
            sa.update(self._table)
            .where(
                t.id == alert_id,
                t.sent_at.is_(None),
                sa.or_(t.claimed_until.is_(None), t.claimed_until < now),
            )
            .values(detail=_clean(detail), updated_at=now)
        )
        with self.db.session() as session:
            return bool(session.execute(update).rowcount == 1)  # type: ignore[attr-defined]

    def reconcile(self) -> list[AccountAlert]:
        """Raise or end the status-borne incidents from the accounts' stored status, whoever set
        it (the pool, an operator, the HTTP API, SQL): an account enabled again, a rotated key or a
        spend cap that reset ends its incident here."""
        now = self.clock()
        with self.db.session() as session:
            accounts = list(session.execute(sa.select(ClaudeAccount.__table__)).mappings())  # type: ignore[attr-defined]
        stored: list[AccountAlert] = []
        open_kinds = self._open_incidents()
        for account in accounts:
            current = _status_kind(account["status"], account["status_until"], now)
            for kind in STATUS_KINDS.values():
                was_open = (account["id"], kind) in open_kinds
                row = None
                if kind == current and not was_open:
                    row = self.incident(
                        account["id"], kind, account["status_reason"], until=account["status_until"]
                    )
                elif kind != current and was_open:
                    row = self.recovery(account["id"], kind, f"account is {_status_words(account, now)}")
                if row is not None:
                    stored.append(row)
        return stored

    def open_accounts(self, kind: str) -> set[str]:
        """The accounts with an incident of ``kind`` open now (whoever raised it)."""
        return {account for account, open_kind in self._open_incidents() if open_kind == kind}

    # -- the rule -----------------------------------------------------------------------------

    def _record(
        self, account_id: str, kind: str, phase: str, detail: str | None, until: datetime | None
    ) -> AccountAlert | None:
        if kind not in ACCOUNT_ALERT_KINDS:
            raise ValueError(f"unknown account alert kind {kind!r}; one of {', '.join(ACCOUNT_ALERT_KINDS)}")
        organization_id = self._organization_of(account_id)
        if organization_id is None:
            return None
        last = self._last(account_id, kind)
        if last.is_open == (phase == PHASE_INCIDENT):
            return None  # the same incident seen again (another worker, a sweep), or nothing open
        if phase == PHASE_RECOVERY and last.announced_open:
            return self._insert(
                account_id, organization_id, kind, phase, last.sequence, detail, until, counts=(0, 1)
            )
        if phase == PHASE_INCIDENT and last.recent_incidents == 0:
            return self._insert(
                account_id, organization_id, kind, phase, last.sequence + 1, detail, until, counts=(1, 0)
            )
        return self._count_in_digest(account_id, organization_id, kind, phase, detail, until)

    def _last(self, account_id: str, kind: str) -> _Last:
        t = self._table.c
        every = sa.and_(t.account_id == account_id, t.kind == kind)
        messages = sa.and_(every, t.phase != PHASE_DIGEST)
        since = self.clock() - self.flap_window
        with self.db.session() as session:
            last = session.execute(
                sa.select(t.phase, t.sequence).where(messages).order_by(t.id.desc()).limit(1)
            ).first()
            recent = session.execute(
                sa.select(sa.func.count()).where(messages, t.phase == PHASE_INCIDENT, t.created_at >= since)
            ).scalar_one()
            # Openings and closings alternate, digests included: open when there is one more opening.
            balance = session.execute(
                sa.select(sa.func.coalesce(sa.func.sum(t.openings - t.recoveries), 0)).where(every)
            ).scalar_one()
        phase, sequence = (str(last.phase), int(last.sequence)) if last is not None else (None, 0)
        return _Last(phase, sequence, int(recent), int(balance) > 0)

    def _open_incidents(self) -> set[tuple[str, str]]:
        t = self._table.c
        query = (
            sa.select(t.account_id, t.kind)
            .group_by(t.account_id, t.kind)
            .having(sa.func.sum(t.openings - t.recoveries) > 0)
        )
        with self.db.session() as session:
            return {(str(a), str(k)) for a, k in session.execute(query)}

    def _organization_of(self, account_id: str) -> str | None:
        accounts = ClaudeAccount.__table__.c  # type: ignore[attr-defined]
        with self.db.session() as session:
            found = session.execute(
                sa.select(accounts.organization_id).where(accounts.id == account_id)
            ).scalar_one_or_none()
        return None if found is None else str(found)

    def _insert(
        self,
        account_id: str,
        organization_id: str,
        kind: str,
        phase: str,
        sequence: int,
        detail: str | None,
        until: datetime | None,
        *,
        counts: tuple[int, int],
    ) -> AccountAlert | None:
        now = self.clock()
        values: dict[str, Any] = {
            "account_id": account_id,
            "organization_id": organization_id,
            "kind": kind,
            "phase": phase,
            "sequence": sequence,
            "detail": _clean(detail),
            "until": until,
            "openings": counts[0],
            "recoveries": counts[1],
            "created_at": now,
            "updated_at": now,
            "send_attempts": 0,
        }
        try:
            with self.db.engine.begin() as conn:
                inserted = conn.execute(sa.insert(self._table).values(values)).inserted_primary_key
        except IntegrityError:
            return None  # another worker stored this very incident (or recovery) first
        log_event(logger, logging.INFO, "account alert stored", account_id=account_id, kind=kind, phase=phase)
        return AccountAlert(id=inserted[0] if inserted else None, **values)

    def _count_in_digest(
        self,
        account_id: str,
        organization_id: str,
        kind: str,
        phase: str,
        detail: str | None,
        until: datetime | None,
    ) -> AccountAlert | None:
        """Add one opening or closing to the digest that waits to be sent, or start a new one."""
        t = self._table.c
        now = self.clock()
        counter = t.openings if phase == PHASE_INCIDENT else t.recoveries
        mine = sa.and_(t.account_id == account_id, t.kind == kind, t.phase == PHASE_DIGEST)
        # Only a digest no sweep has taken is changed: one being sent keeps what it says.
        waiting = sa.and_(mine, t.sent_at.is_(None), sa.or_(t.claimed_until.is_(None), t.claimed_until < now))
        until = until if phase == PHASE_INCIDENT else None
        update = (
            sa.update(self._table)
            .where(waiting)
            .values({counter: counter + 1, t.detail: _clean(detail), t.until: until, t.updated_at: now})
        )
        with self.db.session() as session:
            if session.execute(update).rowcount:  # type: ignore[attr-defined]
                found = session.execute(sa.select(AccountAlert).where(waiting)).scalars().first()
                return found
            last_digest = session.execute(sa.select(sa.func.max(t.sequence)).where(mine)).scalar_one()
        counts = (1, 0) if phase == PHASE_INCIDENT else (0, 1)
        sequence = int(last_digest or 0) + 1
        return self._insert(
            account_id, organization_id, kind, PHASE_DIGEST, sequence, detail, until, counts=counts
        )


def _clean(detail: str | None) -> str | None:
    if not detail:
        return None
    text = redact(detail)
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


def _status_kind(status: str, until: datetime | None, now: datetime) -> str | None:
    if status == AccountStatus.SPEND_EXHAUSTED and until is not None and _aware(until) <= now:
        return None  # the spend cap has reset: the pool uses the account again
    return STATUS_KINDS.get(status)


def _status_words(account: sa.RowMapping, now: datetime) -> str:
    status = str(account["status"])
    if status == AccountStatus.SPEND_EXHAUSTED and _status_kind(status, account["status_until"], now) is None:
        return "active again (its spend cap reset)"
    return status.replace("_", " ")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
