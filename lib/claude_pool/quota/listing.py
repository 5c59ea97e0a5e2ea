"""Reading the stored alerts back, newest first, with the names of their accounts."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from claude_pool.storage import ClaudeAccount, Database, QuotaAlert

__all__ = ["AlertRecord", "list_alerts"]


@dataclass(frozen=True)
class AlertRecord:
    """A stored alert with the name of its account (``None`` once the account is deleted)."""

    alert: QuotaAlert
    account_name: str | None


def list_alerts(
    db: Database, *, organization_id: str | None = None, unsent: bool = False, limit: int = 200
) -> list[AlertRecord]:
    """Newest first."""
    qa = QuotaAlert.__table__  # type: ignore[attr-defined]
    ca = ClaudeAccount.__table__  # type: ignore[attr-defined]
    query = sa.select(qa, ca.c.name).select_from(qa.outerjoin(ca, ca.c.id == qa.c.account_id))
    if organization_id is not None:
        query = query.where(qa.c.organization_id == organization_id)
    if unsent:
        query = query.where(qa.c.sent_at.is_(None))
    query = query.order_by(qa.c.created_at.desc(), qa.c.id.desc()).limit(limit)
    with db.session() as session:
        rows = [dict(r._mapping) for r in session.execute(query)]
    return [
        AlertRecord(alert=QuotaAlert(**{k: v for k, v in r.items() if k != "name"}), account_name=r["name"])
        for r in rows
    ]
