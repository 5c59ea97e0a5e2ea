"""The live view of the pool, written to ``capacity_snapshots`` (history for the UI and sweeps), and
the table capacity-sync publishes of it (with what the Admin API's usage report said, see
``claude_pool.maintenance.usage_drift``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from claude_pool.pool import Pool
from claude_pool.storage import CapacitySnapshot, Database

__all__ = ["CapacityRow", "capacity_table", "headroom_text", "snapshot_pool", "store_snapshot"]


@dataclass(frozen=True)
class CapacityRow:
    account_id: str
    account_name: str
    organization_id: str
    status: str
    bucket_id: str
    breaker_state: str
    requests_limit: int
    requests_remaining: float
    input_tokens_limit: int
    input_tokens_remaining: float
    output_tokens_limit: int
    output_tokens_remaining: float
    in_flight: int
    cooldown_until: float | None
    headroom: float
    # False until upstream's headers have calibrated the bucket: the levels are a guess.
    levels_known: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def snapshot_pool(pool: Pool) -> list[CapacityRow]:
    accounts = await pool.directory.all()
    if not accounts:
        return []
    views = {v.account_id: v for v in await pool.capacity.view([a.candidate for a in accounts])}
    breakers = await pool.breaker.states([a.id for a in accounts])
    rows = []
    for acc in accounts:
        view = views[acc.id]
        breaker = breakers.get(acc.id)
        rows.append(
            CapacityRow(
                account_id=acc.id,
                account_name=acc.name,
                organization_id=acc.organization_id,
                status=acc.status,
                bucket_id=view.bucket_id,
                breaker_state=breaker.state.value if breaker else "closed",
                requests_limit=view.limits.rpm,
                requests_remaining=round(view.requests, 3),
                input_tokens_limit=view.limits.itpm,
                input_tokens_remaining=round(view.input_tokens, 3),
                output_tokens_limit=view.limits.otpm,
                output_tokens_remaining=round(view.output_tokens, 3),
                in_flight=view.in_flight,
                cooldown_until=view.cooldown_until,
                headroom=round(max(0.0, min(1.0, view.headroom)), 4),
                levels_known=view.levels_known,
            )
        )
    return rows


def store_snapshot(db: Database, rows: list[CapacityRow], *, taken_at: datetime | None = None) -> int:
    taken_at = taken_at or datetime.now(UTC)
    with db.session() as session:
        for r in rows:
            session.add(
                CapacitySnapshot(
                    account_id=r.account_id,
                    bucket_id=r.bucket_id,
                    taken_at=taken_at,
                    requests_limit=r.requests_limit,
                    requests_remaining=r.requests_remaining,
                    input_tokens_limit=r.input_tokens_limit,
                    input_tokens_remaining=r.input_tokens_remaining,
                    output_tokens_limit=r.output_tokens_limit,
                    output_tokens_remaining=r.output_tokens_remaining,
                    in_flight=r.in_flight,
                    cooldown_until=datetime.fromtimestamp(r.cooldown_until, UTC)
                    if r.cooldown_until
                    else None,
                    breaker_state=r.breaker_state,
                    headroom=r.headroom,
                )
            )
    return len(rows)


def headroom_text(headroom: float, levels_known: bool) -> str:
    """A headroom as a person reads it; an uncalibrated bucket's is what the pool admits now on its
    guess, not what the key has left."""
    return f"{headroom:.0%}" if levels_known else f"{headroom:.0%} (until calibrated)"


def _until(epoch: float | None, now: datetime) -> str:
    if not epoch or epoch <= now.timestamp():
        return "-"
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def capacity_table(
    rows: Sequence[Mapping[str, Any]],
    usage: Mapping[str, Any] | None,
    *,
    notes: Sequence[str] = (),
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """The live view as a person reads it (one row per account, ``CapacityRow.as_dict()`` in) and
    the text describing it: what the capacity-sync flow publishes as a table. ``usage`` is the
    Admin API's report per key id (None: not read); ``notes`` follow, one line each (usage drift,
    an admin key that failed)."""
    now = now or datetime.now(UTC)
    table = [
        {
            "account": r["account_name"],
            "organization": r["organization_id"],
            "status": r["status"],
            "breaker": r["breaker_state"],
            "headroom": headroom_text(r["headroom"], r.get("levels_known", True)),
            "requests left": f"{r['requests_remaining']:.0f}/{r['requests_limit']}",
            "input tokens left": f"{r['input_tokens_remaining']:.0f}/{r['input_tokens_limit']}",
            "output tokens left": f"{r['output_tokens_remaining']:.0f}/{r['output_tokens_limit']}",
            "in flight": r["in_flight"],
            "cooling down until": _until(r["cooldown_until"], now),
        }
        for r in rows
    ]
    description = f"{len(rows)} accounts at {now.isoformat(timespec='seconds')}"
    if usage is not None:
        description += f"; Admin API usage report covers {len(usage)} keys"
    if notes:
        description += "\n\n" + "\n".join(f"- {note}" for note in notes)
    return table, description
