"""Usage drift: another client spending from a pooled key.

Each capacity sync asks Anthropic's Admin API (``ANTHROPIC_ADMIN_API_KEY``) what every key of the
admin key's organization spent over the last :data:`DRIFT_WINDOW`, and compares it, key by key, with
what the pool recorded for the account holding that key in the same window (the tokens of its rows
in ``orchestrator_executions``, by the time each finished). When upstream counts clearly more than
the pool sent, someone else holds the key: an account alert of kind ``usage_drift`` is stored for
Slack (once per incident, with the numbers; a recovery note when the counts agree again).

Which report id is which pooled key: the Admin API lists the organization's keys with a partial hint
(their first and last characters); each account's key is opened in memory only to compare it with
those hints, and a hint that fits more than one key is left out rather than guessed. Pooled keys of
other Anthropic organizations are not in the admin key's list: they are counted as not covered.

A failing Admin API (the admin key refused, the API unreachable) is a warning in the result, never
an error: the rest of capacity sync goes on without the comparison.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from claude_pool.accounts.registry import AccountService
from claude_pool.core.errors import ClaudePoolError, UpstreamFailure
from claude_pool.core.logs import log_event
from claude_pool.core.redaction import redact
from claude_pool.maintenance.admin_api import AdminApi, ApiKeyInfo, KeyUsage
from claude_pool.quota.account_alerts import KIND_USAGE_DRIFT, AccountAlerts
from claude_pool.runtime import Runtime
from claude_pool.storage import ClaudeAccount, Database, OrchestratorExecution, utcnow

__all__ = [
    "DRIFT_MIN_FRACTION",
    "DRIFT_MIN_TOKENS",
    "DRIFT_WINDOW",
    "DriftCheck",
    "KeyComparison",
    "check_usage_drift",
    "recorded_usage",
]

logger = logging.getLogger("claude_pool.maintenance")

#: How far back each sync compares. An hour: long enough that calls in flight at its edges are a
#: small share of it, short enough that a drift ends (and its recovery note goes out) within the hour.
DRIFT_WINDOW = timedelta(minutes=60)

#: How many tokens upstream may count on a key beyond what the pool recorded before it is a drift:
#: the larger of these two. Some difference is normal and not another client: a call the pool gave
#: up on (its own time-out, a caller gone mid-stream) that upstream finished and billed; a call in
#: flight at the window's start, which upstream counts in the minute it served it and the pool by
#: the time it finished; health-check probes that send a one-token message, which are not
#: executions. A few ordinary calls' worth, or a tenth of the pool's own traffic, covers those;
#: another client's use shows far above it. (Upstream's report lagging a few minutes behind only
#: makes upstream count less, which can hide the last minutes of a drift, never invent one.)
DRIFT_MIN_TOKENS = 2_000
DRIFT_MIN_FRACTION = 0.10


@dataclass(frozen=True)
class KeyComparison:
    """One pooled key: what upstream counted on it in the window and what the pool recorded."""

    account_id: str
    account_name: str
    organization_id: str
    api_key_id: str
    key_hint: str
    upstream: KeyUsage
    pool: KeyUsage

    @property
    def excess(self) -> int:
        """Tokens upstream counted beyond what the pool recorded (negative: fewer)."""
        return self.upstream.total - self.pool.total

    @property
    def tolerance(self) -> int:
        return max(DRIFT_MIN_TOKENS, math.ceil(DRIFT_MIN_FRACTION * self.pool.total))

    @property
    def drifting(self) -> bool:
        return self.excess > self.tolerance

    def describe(self, start: datetime, end: datetime) -> str:
        """The numbers, as the alert and the table's notes give them."""
        span = f"from {start:%H:%M} to {end:%H:%M} UTC"
        head = (
            f"Anthropic counted {_tokens(self.upstream)} on key {self.key_hint} ({self.api_key_id}) "
            f"{span}; the pool recorded {_tokens(self.pool)}"
        )
        if self.drifting:
            return f"{head}: {self.excess:,} more than the pool sent (tolerance {self.tolerance:,})."
        return f"{head}: within the tolerance of {self.tolerance:,}."

    def as_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "account_name": self.account_name,
            "organization_id": self.organization_id,
            "api_key_id": self.api_key_id,
            "upstream_tokens": self.upstream.total,
            "pool_tokens": self.pool.total,
            "upstream": self.upstream.as_dict(),
            "pool": self.pool.as_dict(),
            "excess_tokens": self.excess,
            "tolerance_tokens": self.tolerance,
            "drifting": self.drifting,
        }


def _tokens(usage: KeyUsage) -> str:
    cached = f", {usage.cache_read_input_tokens:,} cache reads" if usage.cache_read_input_tokens else ""
    return f"{usage.total:,} tokens ({usage.input_tokens:,} in, {usage.output_tokens:,} out{cached})"


@dataclass(frozen=True)
class DriftCheck:
    """What one comparison found. ``usage``: the report per key id (None when not read);
    ``raised``/``ended``: the comparisons that opened or closed an incident in this run."""

    window_start: datetime
    window_end: datetime
    usage: dict[str, KeyUsage] | None = None
    comparisons: tuple[KeyComparison, ...] = ()
    not_covered: tuple[str, ...] = ()
    raised: tuple[KeyComparison, ...] = ()
    ended: tuple[KeyComparison, ...] = ()
    warning: str | None = None
    skipped: list[str] = field(default_factory=list)

    @property
    def drifting(self) -> list[KeyComparison]:
        return [c for c in self.comparisons if c.drifting]

    def notes(self) -> list[str]:
        """Lines for the published capacity table: the warning, each drift, what was compared."""
        if self.warning:
            return [f"⚠️ {self.warning}"]
        if self.usage is None:
            return ["Usage drift not checked: ANTHROPIC_ADMIN_API_KEY is not set."]
        notes = [
            f"⚠️ Usage drift on {redact(c.account_name)}: {c.describe(self.window_start, self.window_end)}"
            for c in self.drifting
        ]
        agreeing = len(self.comparisons) - len(notes)
        notes.append(
            f"Usage compared with the Admin API for {len(self.comparisons)} pooled key(s) over the last "
            f"{_minutes(self.window_start, self.window_end)} minutes: {agreeing} within tolerance, "
            f"{len(notes)} drifting."
        )
        if self.not_covered:
            names = ", ".join(redact(n) for n in self.not_covered)
            notes.append(f"Not covered by the admin key's organization: {names}.")
        notes.extend(self.skipped)
        return notes

    def as_dict(self) -> dict[str, Any]:
        """Plain and key-free: what the capacity-sync flow returns and publishes."""
        return {
            "window_start": self.window_start.isoformat(timespec="seconds"),
            "window_end": self.window_end.isoformat(timespec="seconds"),
            "usage": None if self.usage is None else {k: u.as_dict() for k, u in self.usage.items()},
            "compared": [c.as_dict() for c in self.comparisons],
            "drifting": [c.account_name for c in self.drifting],
            "alerts_raised": len(self.raised),
            "alerts_ended": len(self.ended),
            "not_covered": list(self.not_covered),
            "warning": self.warning,
            "notes": self.notes(),
        }


def _minutes(start: datetime, end: datetime) -> int:
    return round((end - start).total_seconds() / 60)


_EX = OrchestratorExecution.__table__.c  # type: ignore[attr-defined]


def recorded_usage(
    db: Database, account_ids: Sequence[str], start: datetime, end: datetime
) -> dict[str, KeyUsage]:
    """The tokens of each account's executions that finished in ``[start, end]``, whatever their
    status (a call billed upstream counts even when its execution failed afterwards)."""
    if not account_ids:
        return {}
    finished = sa.func.coalesce(_EX.finished_at, _EX.created_at)
    total = sa.func.sum
    query = (
        sa.select(
            _EX.account_id,
            total(
                sa.func.coalesce(_EX.input_tokens, 0) + sa.func.coalesce(_EX.cache_creation_input_tokens, 0)
            ),
            total(sa.func.coalesce(_EX.output_tokens, 0)),
            total(sa.func.coalesce(_EX.cache_read_input_tokens, 0)),
        )
        .where(
            _EX.account_id.in_(list(account_ids)),
            finished >= sa.bindparam("start", start, type_=_EX.created_at.type),
            finished <= sa.bindparam("end", end, type_=_EX.created_at.type),
        )
        .group_by(_EX.account_id)
    )
    with db.session() as session:
        return {
            str(account): KeyUsage(int(inp or 0), int(out or 0), int(read or 0))
            for account, inp, out, read in session.execute(query)
        }


def _fits(hint: str, secret: str) -> bool:
    """Whether a partial hint (``sk-ant-api03-R2D...igAA``) was made from ``secret``."""
    for ellipsis in ("...", "…"):
        if ellipsis in hint:
            head, _, tail = hint.partition(ellipsis)
            # Too little of the key on either side would fit any key: no match rather than a guess.
            return len(head) >= 8 and len(tail) >= 2 and secret.startswith(head) and secret.endswith(tail)
    return False


@dataclass(frozen=True)
class _Matched:
    pairs: list[tuple[ClaudeAccount, ApiKeyInfo]]
    not_covered: list[str]
    skipped: list[str]


def _match_keys(
    accounts: AccountService, rows: Sequence[ClaudeAccount], listed: Sequence[ApiKeyInfo]
) -> _Matched:
    """Each pooled account with the listed key its own key fits; a key that fits none is not
    covered, and an account whose key fits several (or shares its fit) is skipped."""
    fits: dict[str, list[ApiKeyInfo]] = {}
    skipped: list[str] = []
    for row in rows:
        try:
            secret = accounts.decrypt_api_key(row)
        except ClaudePoolError as exc:
            skipped.append(
                f"{redact(row.name)}: its key could not be opened ({type(exc).__name__}); not compared."
            )
            continue
        fits[row.id] = [k for k in listed if k.partial_key_hint and _fits(k.partial_key_hint, secret)]
        del secret
    claimed: dict[str, int] = {}
    for fitting in fits.values():
        for key in fitting:
            claimed[key.id] = claimed.get(key.id, 0) + 1
    pairs, not_covered = [], []
    for row in rows:
        found = fits.get(row.id)
        if found is None:
            continue
        if not found:
            not_covered.append(row.name)
        elif len(found) == 1 and claimed[found[0].id] == 1:
            pairs.append((row, found[0]))
        else:
            skipped.append(
                f"{redact(row.name)}: its key's hint is not unique in the organization; not compared."
            )
    return _Matched(pairs, not_covered, skipped)


def _minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


async def check_usage_drift(
    runtime: Runtime, *, now: datetime | None = None, window: timedelta = DRIFT_WINDOW
) -> DriftCheck:
    """Compare the Admin API's usage per key with the pool's records and raise or end the
    ``usage_drift`` account alerts. Without an admin key nothing is read (``usage`` None); an
    Admin API that fails leaves a ``warning`` and changes no alert."""
    end = now or utcnow()
    # Upstream buckets by the minute: the window starts on one, as the first bucket does.
    start = _minute(end - window)
    if runtime.settings.anthropic_admin_api_key is None:
        return DriftCheck(start, end)
    try:
        async with AdminApi.open(runtime.settings) as admin:
            usage = await admin.usage_by_key(start)
            listed = await admin.api_keys()
    except UpstreamFailure as exc:
        warning = f"Usage drift not checked: {redact(str(exc))}. The capacity table is current all the same."
        log_event(logger, logging.WARNING, "usage drift not checked", error=redact(str(exc)))
        return DriftCheck(start, end, warning=warning)
    return await asyncio.to_thread(_compare, runtime, usage, listed, start, end)


def _compare(
    runtime: Runtime, usage: dict[str, KeyUsage], listed: list[ApiKeyInfo], start: datetime, end: datetime
) -> DriftCheck:
    accounts = runtime.accounts
    matched = _match_keys(accounts, accounts.list(), listed)
    recorded = recorded_usage(runtime.db, [row.id for row, _ in matched.pairs], start, end)
    comparisons = tuple(
        KeyComparison(
            account_id=row.id,
            account_name=row.name,
            organization_id=row.organization_id,
            api_key_id=key.id,
            key_hint=row.api_key_hint,
            upstream=usage.get(key.id, KeyUsage()),
            pool=recorded.get(row.id, KeyUsage()),
        )
        for row, key in matched.pairs
    )
    raised, ended = _alert(AccountAlerts(runtime.db), comparisons, start, end)
    return DriftCheck(
        start,
        end,
        usage=usage,
        comparisons=comparisons,
        not_covered=tuple(matched.not_covered),
        raised=raised,
        ended=ended,
        skipped=matched.skipped,
    )


def _alert(
    alerts: AccountAlerts, comparisons: Sequence[KeyComparison], start: datetime, end: datetime
) -> tuple[tuple[KeyComparison, ...], tuple[KeyComparison, ...]]:
    """Open an incident for each drifting key that has none, end the open ones that agree again."""
    open_now = alerts.open_accounts(KIND_USAGE_DRIFT)
    raised, ended = [], []
    for c in comparisons:
        if c.drifting:
            log_event(
                logger,
                logging.WARNING,
                "usage drift",
                account_id=c.account_id,
                account=c.account_name,
                upstream_tokens=c.upstream.total,
                pool_tokens=c.pool.total,
            )
            if c.account_id not in open_now and alerts.incident(
                c.account_id, KIND_USAGE_DRIFT, c.describe(start, end)
            ):
                raised.append(c)
        elif c.account_id in open_now and alerts.recovery(
            c.account_id, KIND_USAGE_DRIFT, c.describe(start, end)
        ):
            ended.append(c)
    return tuple(raised), tuple(ended)
