"""The capacity table that capacity-sync publishes: what a person reads of each account."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from claude_pool.maintenance import capacity_table

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _row(name: str, *, cooldown_until: float | None) -> dict[str, Any]:
    return {
        "account_name": name,
        "organization_id": "acme",
        "status": "active",
        "breaker_state": "closed",
        "headroom": 0.375,
        "requests_remaining": 22.6,
        "requests_limit": 60,
        "input_tokens_remaining": 1000.0,
        "input_tokens_limit": 40000,
        "output_tokens_remaining": 0.4,
        "output_tokens_limit": 8000,
        "in_flight": 2,
        "cooldown_until": cooldown_until,
    }


def test_each_account_is_one_row_with_what_is_left_of_each_limit() -> None:
    later = NOW.timestamp() + 90
    table, description = capacity_table(
        [_row("a", cooldown_until=later), _row("b", cooldown_until=NOW.timestamp() - 1)], None, now=NOW
    )
    assert [r["account"] for r in table] == ["a", "b"]
    assert table[0]["headroom"] == "38%"
    assert table[0]["requests left"] == "23/60"
    assert table[0]["output tokens left"] == "0/8000"
    assert table[0]["cooling down until"] == "2026-12-03T12:01:30+00:00"
    assert table[1]["cooling down until"] == "-"  # a cool-down already over is not shown
    assert description == "2 accounts at 2026-12-03T12:00:00+00:00"


def test_the_description_says_how_many_keys_the_usage_report_covers() -> None:
    _, description = capacity_table([], {"key-1": {}, "key-2": {}}, now=NOW)
    assert description.endswith("; Admin API usage report covers 2 keys")
