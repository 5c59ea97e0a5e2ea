"""Thresholds, exactly-once evaluation, windows, recovery and budgets, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from claude_pool.capacity import BucketLimits, BucketView, Demand, EmbeddedCapacityStore
from claude_pool.core.config import AlertsConfig
from claude_pool.events.bus import InProcessEventBus
from claude_pool.pool.directory import AccountDirectory
from claude_pool.quota import (
    QuotaEvaluator,
    budget_observations,
    observations_from_views,
    previous_window,
    window_bounds,
    window_for,
)
from claude_pool.storage import Database, ExecutionStatus, OrchestratorExecution, QuotaAlert

from .conftest import WINDOW, QuotaWorld


def _thresholds(alerts: list[QuotaAlert]) -> list[float]:
    return sorted(a.threshold for a in alerts if a.kind == "threshold")


def _rows(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM quota_alerts")).scalar_one())


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.5, []), (0.85, [0.8]), (0.97, [0.8, 0.95]), (1.0, [0.8, 0.95, 1.0]), (1.3, [0.8, 0.95, 1.0])],
)
def test_every_threshold_crossed_raises_its_own_alert(
    world: QuotaWorld, fraction: float, expected: list[float]
) -> None:
    evaluator = QuotaEvaluator(world.db, world.config)
    assert _thresholds(evaluator.evaluate([world.observation(fraction)])) == expected
    assert _rows(world.db) == len(expected)


def test_the_same_observation_again_raises_nothing_and_95_is_not_silenced_by_80(world: QuotaWorld) -> None:
    evaluator = QuotaEvaluator(world.db, world.config)
    assert _thresholds(evaluator.evaluate([world.observation(0.85)])) == [0.8]
    assert evaluator.evaluate([world.observation(0.85)]) == []
    # Later in the same window usage climbs: the 95 % alert still comes, the 80 % one does not repeat.
    assert _thresholds(evaluator.evaluate([world.observation(0.97)])) == [0.95]
    assert evaluator.evaluate([world.observation(0.97)]) == []
    assert _thresholds(evaluator.evaluate([world.observation(1.0)])) == [1.0]
    assert _rows(world.db) == 3


def test_a_new_window_or_another_metric_or_account_raises_again(world: QuotaWorld) -> None:
    evaluator = QuotaEvaluator(world.db, world.config)
    assert len(evaluator.evaluate([world.observation(0.97)])) == 2
    assert len(evaluator.evaluate([world.observation(0.97, window="2026-11-26T09:42")])) == 2
    assert len(evaluator.evaluate([world.observation(0.97, metric="input_tokens_per_minute")])) == 2
    assert len(evaluator.evaluate([world.observation(0.97, account=world.secondary)])) == 2
    assert _rows(world.db) == 8


def test_five_concurrent_evaluators_in_threads_raise_each_alert_once(world: QuotaWorld) -> None:
    observations = [
        world.observation(1.0),
        world.observation(0.97, account=world.secondary),
        world.observation(0.9, metric="output_tokens_per_minute"),
    ]
    results: list[list[QuotaAlert]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(5)

    def sweep() -> None:
        # Each thread its own Database (engine, sessions): as five worker processes would be.
        db = Database(world.db.url)
        try:
            barrier.wait()
            results.append(QuotaEvaluator(db, world.config).evaluate(observations))
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=sweep) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    raised = [(a.account_id, a.metric, a.threshold) for batch in results for a in batch]
    assert len(raised) == len(set(raised)) == 3 + 2 + 1
    assert _rows(world.db) == 6


async def test_concurrent_aevaluate_publishes_each_alert_once(world: QuotaWorld) -> None:
    bus = InProcessEventBus()
    evaluators = [QuotaEvaluator(world.db, world.config, bus=bus) for _ in range(5)]
    batches = await asyncio.gather(*(e.aevaluate([world.observation(0.97)]) for e in evaluators))
    assert sum(len(b) for b in batches) == 2
    events = [e for e in bus._history if e.type == "quota.alert"]
    assert len(events) == 2
    assert {e.organization_id for e in events} == {"org-a"}
    assert sorted(e.data["threshold"] for e in events) == [0.8, 0.95]
    assert all(e.data["account_id"] == world.primary.id for e in events)


def test_each_alert_is_logged_once_with_account_metric_threshold_and_usage(
    world: QuotaWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="claude_pool.quota")
    evaluator = QuotaEvaluator(world.db, world.config)
    evaluator.evaluate([world.observation(0.97, account=world.secondary)])
    evaluator.evaluate([world.observation(0.97, account=world.secondary)])
    lines = [r.getMessage() for r in caplog.records if r.name == "claude_pool.quota"]
    assert len(lines) == 2
    assert any(
        "team-b-secondary" in line and "requests_per_minute" in line and "95%" in line and "970/1000" in line
        for line in lines
    )


def test_recovery_is_announced_once_after_an_alert(world: QuotaWorld) -> None:
    evaluator = QuotaEvaluator(world.db, world.config)
    evaluator.evaluate([world.observation(0.97)])
    # Below the lowest threshold in the next minute: one recovery, keyed on the alerted window.
    recovered = evaluator.evaluate([world.observation(0.3, window="2026-11-26T09:42")])
    assert [(a.kind, a.window, a.threshold) for a in recovered] == [("recovery", WINDOW, 0.8)]
    assert evaluator.evaluate([world.observation(0.3, window="2026-11-26T09:42")]) == []
    # Two windows later nothing is outstanding: no new recovery.
    assert evaluator.evaluate([world.observation(0.1, window="2026-11-26T09:43")]) == []
    # Without an alert before, low usage is silence.
    assert evaluator.evaluate([world.observation(0.1, account=world.secondary)]) == []


def test_recovery_in_the_same_window_and_not_when_disabled(world: QuotaWorld) -> None:
    evaluator = QuotaEvaluator(world.db, world.config)
    evaluator.evaluate([world.observation(0.85)])
    assert [a.kind for a in evaluator.evaluate([world.observation(0.5)])] == ["recovery"]
    quiet = QuotaEvaluator(world.db, AlertsConfig(announce_recovery=False))
    quiet.evaluate([world.observation(0.9, account=world.secondary)])
    assert quiet.evaluate([world.observation(0.1, account=world.secondary, window="2026-11-26T09:42")]) == []


def test_custom_thresholds(world: QuotaWorld) -> None:
    evaluator = QuotaEvaluator(world.db, AlertsConfig(thresholds=(0.5, 0.9)))
    assert _thresholds(evaluator.evaluate([world.observation(0.6)])) == [0.5]


def test_windows_are_utc_minutes_days_and_months() -> None:
    at = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)
    assert window_for("requests_per_minute", at) == "2026-12-31T23:59"
    assert window_for("daily_token_budget", at) == "2026-12-31"
    assert window_for("monthly_token_budget", at) == "2026-12"
    assert window_bounds("monthly_token_budget", "2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert previous_window("requests_per_minute", "2026-11-26T00:00") == "2026-11-25T23:59"
    assert previous_window("daily_token_budget", "2026-03-01") == "2026-02-28"
    assert previous_window("monthly_token_budget", "2026-01") == "2025-12"
    assert previous_window("something_else", "x") is None


def test_observations_from_views_use_what_is_left_now(world: QuotaWorld) -> None:
    at = datetime(2026, 11, 26, 9, 41, 12, tzinfo=UTC).timestamp()
    limits = BucketLimits(rpm=100, itpm=10_000, otpm=1_000)
    views = [
        BucketView(
            world.primary.id,
            "group:org1",
            limits,
            requests=3,
            input_tokens=10_000,
            output_tokens=-50,
            cooldown_until=None,
            in_flight=0,
            observed_at=at,
        ),
        BucketView("not-an-account-of-ours", "x", limits, 0, 0, 0, None, 0, at),
    ]
    observations = {o.metric: o for o in observations_from_views(views, [world.primary])}
    assert set(observations) == {"requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute"}
    assert observations["requests_per_minute"].fraction == pytest.approx(0.97)
    assert observations["input_tokens_per_minute"].fraction == 0
    assert observations["output_tokens_per_minute"].fraction == pytest.approx(1.05)
    assert {o.window for o in observations.values()} == {"2026-11-26T09:41"}
    assert {o.bucket_id for o in observations.values()} == {"group:org1"}


async def test_observations_from_a_live_capacity_store(world: QuotaWorld, tmp_path: Path) -> None:
    world.accounts.update(
        world.secondary.id,
        {"requests_per_minute": 100, "input_tokens_per_minute": 10_000, "output_tokens_per_minute": 1_000},
    )
    now = datetime(2026, 11, 26, 9, 41, 30, tzinfo=UTC).timestamp()
    directory = AccountDirectory(world.db, world.config)
    accounts = [a for a in await directory.all() if a.id == world.secondary.id]
    async with EmbeddedCapacityStore(tmp_path / "capacity.db", clock=lambda: now) as store:
        selection = await store.acquire(
            [a.candidate for a in accounts], Demand(input_tokens=9_700, output_tokens=10)
        )
        assert selection.reservation is not None
        views = await store.view([a.candidate for a in accounts])
    alerts = QuotaEvaluator(world.db, world.config).evaluate(observations_from_views(views, accounts))
    assert [(a.metric, a.threshold, a.window) for a in alerts] == [
        ("input_tokens_per_minute", 0.8, "2026-11-26T09:41"),
        ("input_tokens_per_minute", 0.95, "2026-11-26T09:41"),
    ]


def _execution(
    world: QuotaWorld,
    account_id: str,
    tokens: tuple[int, int],
    finished: datetime,
    status: str = ExecutionStatus.SUCCEEDED,
) -> OrchestratorExecution:
    return OrchestratorExecution(
        organization_id="org-a",
        model="claude-x",
        max_tokens=100,
        request_json="{}",
        account_id=account_id,
        status=status,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        created_at=finished - timedelta(seconds=5),
        finished_at=finished,
    )


def test_budgets_sum_succeeded_executions_in_the_window(world: QuotaWorld) -> None:
    world.accounts.update(world.primary.id, {"daily_token_budget": 1_000, "monthly_token_budget": 10_000})
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    with world.db.session() as session:
        for row in [
            _execution(world, world.primary.id, (600, 300), now - timedelta(hours=1)),  # today
            _execution(world, world.primary.id, (50, 50), now - timedelta(hours=2)),  # today
            _execution(world, world.primary.id, (5_000, 0), now - timedelta(days=3)),  # this month
            _execution(
                world, world.primary.id, (9_999, 0), datetime(2026, 10, 31, 23, tzinfo=UTC)
            ),  # last month
            _execution(world, world.primary.id, (9_999, 0), now, status=ExecutionStatus.FAILED),
            _execution(world, world.secondary.id, (9_999, 0), now),  # no budget
        ]:
            session.add(row)
    observations = {o.metric: o for o in budget_observations(world.db, world.config, now=now)}
    assert set(observations) == {"daily_token_budget", "monthly_token_budget"}
    daily, monthly = observations["daily_token_budget"], observations["monthly_token_budget"]
    assert (daily.observed, daily.limit, daily.window) == (1_000, 1_000, "2026-11-26")
    assert (monthly.observed, monthly.limit, monthly.window) == (6_000, 10_000, "2026-11")
    alerts = QuotaEvaluator(world.db, world.config).evaluate(observations.values())
    assert sorted((a.metric, a.threshold) for a in alerts) == [
        ("daily_token_budget", 0.8),
        ("daily_token_budget", 0.95),
        ("daily_token_budget", 1.0),
    ]
    # The next day starts from zero: yesterday's budget alert is announced as recovered.
    tomorrow = budget_observations(world.db, world.config, now=now + timedelta(days=1))
    recovered = QuotaEvaluator(world.db, world.config).evaluate(tomorrow)
    assert [(a.kind, a.metric, a.window) for a in recovered] == [
        ("recovery", "daily_token_budget", "2026-11-26")
    ]


def _priced(world: QuotaWorld, model: str, tokens: tuple[int, int, int, int], finished: datetime) -> OrchestratorExecution:
    row = _execution(world, world.primary.id, tokens[:2], finished)
    row.model = model
    row.cache_creation_input_tokens, row.cache_read_input_tokens = tokens[2:]
    return row


def test_a_monthly_spend_budget_counts_each_models_price(
    world: QuotaWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """Spend = every token class at its model's price; a dated snapshot takes its model's price; a
    model without a price is named in a warning, never counted as free silently."""
    world.accounts.update(world.primary.id, {"monthly_spend_budget_usd": 10.0})
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    with world.db.session() as session:
        # Sonnet 5.5 ($2 in, $10 out, $2.5 write, $0.1 read): 2 + 5 + 0.25 + 0.1 = $7.35
        session.add(_priced(world, "claude-sonnet-5-5", (1_000_000, 500_000, 100_000, 1_000_000), now))
        # a dated Opus 5.5 ($4 in, $20 out): 0.4 + 0.2 = $0.60
        session.add(_priced(world, "claude-opus-5-5-20261101", (100_000, 10_000, 0, 0), now))
        session.add(_priced(world, "claude-sonnet-5-5", (9_000_000, 0, 0, 0), datetime(2026, 10, 31, tzinfo=UTC)))
        session.add(_priced(world, "claude-unknown-9", (123_456, 0, 0, 0), now - timedelta(days=1)))
    with caplog.at_level(logging.WARNING, logger="claude_pool.quota"):
        observations = [o for o in budget_observations(world.db, world.config, now=now)
                        if o.metric == "monthly_spend_budget_usd"]
    (spend,) = observations
    assert (spend.account_id, spend.window, spend.limit) == (world.primary.id, "2026-11", 10.0)
    assert spend.observed == pytest.approx(7.35 + 0.60)
    (warning,) = [r for r in caplog.records if "without a price" in r.getMessage()]
    assert warning.models == "claude-unknown-9 (123,456 tokens)"  # type: ignore[attr-defined]
    assert "pricing" in warning.fix  # type: ignore[attr-defined]
    alerts = QuotaEvaluator(world.db, world.config).evaluate(observations)
    assert [(a.metric, a.threshold) for a in alerts] == []  # 79.5 %: below the first threshold
    with world.db.session() as session:
        session.add(_priced(world, "claude-haiku-5-5", (1_000_000, 1_000_000, 0, 0), now))  # $0.60
    again = [o for o in budget_observations(world.db, world.config, now=now) if o.metric.endswith("_usd")]
    alerts = QuotaEvaluator(world.db, world.config).evaluate(again)
    assert [(a.metric, a.threshold) for a in alerts] == [("monthly_spend_budget_usd", 0.8)]


def test_a_spend_budget_without_prices_is_refused_at_load(tmp_path: Path) -> None:
    from claude_pool.core.config import load_config
    from claude_pool.core.errors import ConfigError

    path = tmp_path / "multi-account.json"
    path.write_text('{"pricing": {}, "tiers": {"free": {"requestsPerMinute": 5, "inputTokensPerMinute": 5, '
                    '"outputTokensPerMinute": 5}, "pro": {"requestsPerMinute": 5, "inputTokensPerMinute": 5, '
                    '"outputTokensPerMinute": 5}, "enterprise": {"requestsPerMinute": 5, '
                    '"inputTokensPerMinute": 5, "outputTokensPerMinute": 5, "monthlySpendBudgetUsd": 100}}}')
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert "monthlySpendBudgetUsd" in str(raised.value) and "pricing" in str(raised.value)


def test_tier_budgets_apply_to_every_account_of_the_tier(world: QuotaWorld) -> None:
    from claude_pool.core.config import Limits, PoolConfig

    tiers = dict(world.config.tiers)
    tiers["pro"] = Limits(
        requests_per_minute=10,
        input_tokens_per_minute=10,
        output_tokens_per_minute=10,
        daily_token_budget=500,
    )
    config = PoolConfig(tiers=tiers)
    observations = budget_observations(world.db, config, now=datetime(2026, 11, 26, tzinfo=UTC))
    assert sorted((o.account_id, o.metric, o.observed) for o in observations) == sorted(
        [(world.primary.id, "daily_token_budget", 0.0), (world.secondary.id, "daily_token_budget", 0.0)]
    )
