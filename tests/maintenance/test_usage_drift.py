"""Usage drift against the Anthropic and Slack simulators: another client spending from a pooled key
raises one alert (stored, sent once, with the numbers) and a recovery note when it stops; the pool's
own traffic raises none; an admin key that fails is a warning, never an error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import timedelta

import anthropic
import pytest
import sqlalchemy as sa

from claude_pool.core.settings import Secret
from claude_pool.maintenance import DRIFT_MIN_TOKENS, AdminApi, capacity_table, check_usage_drift
from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.pool.token_estimate import estimate_input_tokens
from claude_pool.quota import AlertOutbox
from claude_pool.quota.account_alerts import KIND_USAGE_DRIFT
from claude_pool.quota.slack import SlackNotifier
from claude_pool.records import ExecutionStore, record_delegation
from claude_pool.runtime import Runtime
from claude_pool.simulator import OutputSpec, RunningSlackSimulator, Scenario, SlackMessage
from claude_pool.storage import AccountAlert, utcnow
from tests.plugins.runtimes import SimulatedRuntime

# Two Anthropic organizations of two keys each, all four pooled; the admin key is the first one's,
# so acct-1 and acct-1b are compared and acct-2, acct-2b are not covered. Answers are 40 tokens.
SCENARIO = Scenario.uniform(
    accounts=2,
    keys_per_org=2,
    rpm=10_000,
    itpm=10_000_000,
    otpm=2_000_000,
    output=OutputSpec(mode="fixed", tokens=40),
)
ADMIN_KEY = SCENARIO.orgs[0].admin_key
CHANNEL = "#eng-alerts"
#: What the other client sends from a pooled key: three long prompts, well above the tolerance.
FOREIGN_CALLS, FOREIGN_PROMPT = 3, 4 * 1_000


@dataclass
class DriftWorld:
    built: SimulatedRuntime
    slack: RunningSlackSimulator
    pool: Pool

    @property
    def runtime(self) -> Runtime:
        return self.built.runtime

    async def pooled_traffic(self, count: int = 8) -> None:
        """Delegations through the pool, recorded as executions, on every account in turn."""
        store = ExecutionStore(self.runtime.db)
        for n in range(count):
            request = DelegationRequest(
                organization_id="tenant-a", message=f"question {n}", max_tokens=100, strategy="round_robin"
            )
            recorded = await record_delegation(self.pool, store, request)
            assert recorded.error is None

    def another_client_spends(self, name: str) -> int:
        """Someone else holding the pooled key calls Anthropic with it directly; returns the tokens
        those calls cost (the simulator charges the pool's own estimate of the input)."""
        key = self.built.sim.key(name)
        client = anthropic.Anthropic(api_key=key.key, base_url=self.built.sim.base_url, max_retries=0)
        spent = 0
        try:
            for n in range(FOREIGN_CALLS):
                body = {
                    "model": "claude-sonnet-5-5",
                    "max_tokens": 100,
                    "messages": [
                        {"role": "user", "content": f"not through the pool {n} " + "x" * FOREIGN_PROMPT}
                    ],
                }
                reply = client.messages.create(**body)  # type: ignore[call-overload]
                assert reply.usage.input_tokens == estimate_input_tokens(body)
                spent += reply.usage.input_tokens + reply.usage.output_tokens
        finally:
            client.close()
        return spent

    async def send_alerts(self) -> int:
        settings = self.runtime.settings
        async with SlackNotifier(settings, max_wait=5.0) as notifier:
            return (await AlertOutbox(self.runtime.db, notifier).send_unsent()).sent

    def posted(self) -> list[SlackMessage]:
        return self.slack.messages_in(CHANNEL)

    def drift_rows(self) -> list[tuple[str, str, str]]:
        """(account name, phase, detail) of every usage-drift alert stored."""
        accounts = {i: n for n, i in self.built.account_ids.items()}
        t = AccountAlert.__table__.c  # type: ignore[attr-defined]
        query = sa.select(t.account_id, t.phase, t.detail).where(t.kind == KIND_USAGE_DRIFT).order_by(t.id)
        with self.runtime.db.engine.connect() as conn:
            return [(accounts[a], str(p), str(d)) for a, p, d in conn.execute(query)]


@pytest.fixture
async def world(
    simulated_runtime_factory: Callable[..., SimulatedRuntime],
    slack_sim_factory: Callable[..., RunningSlackSimulator],
) -> AsyncIterator[DriftWorld]:
    slack = slack_sim_factory(rate_per_channel=100, burst=100)
    built = simulated_runtime_factory(
        SCENARIO,
        anthropic_admin_api_key=Secret(ADMIN_KEY),
        slack_bot_token=Secret(slack.token),
        slack_base_url=slack.base_url,
    )
    async with Pool.open(built.runtime) as pool:
        yield DriftWorld(built, slack, pool)


async def test_the_pools_own_traffic_matches_upstream_and_raises_nothing(world: DriftWorld) -> None:
    await world.pooled_traffic()
    check = await check_usage_drift(world.runtime)
    assert check.warning is None
    compared = {c.account_name: c for c in check.comparisons}
    assert set(compared) == {"acct-1", "acct-1b"}
    assert set(check.not_covered) == {"acct-2", "acct-2b"}  # keys of another Anthropic organization
    for c in compared.values():
        # every token upstream counted on the key is one the pool recorded, and none is missing
        assert c.upstream == c.pool and c.pool.output_tokens == 2 * 40 and not c.drifting
    assert check.drifting == [] and check.raised == ()
    assert world.drift_rows() == []
    assert await world.send_alerts() == 0 and world.posted() == []
    assert any("2 within tolerance, 0 drifting" in note for note in check.notes())


async def test_another_client_spending_from_a_pooled_key_raises_one_alert_and_a_recovery_note(
    world: DriftWorld,
) -> None:
    await world.pooled_traffic()
    foreign = world.another_client_spends("acct-1b")
    check = await check_usage_drift(world.runtime)
    [drift] = check.drifting
    assert drift.account_name == "acct-1b" and check.raised == (drift,)
    # upstream counted exactly the other client's tokens beyond the pool's
    assert drift.excess == foreign > DRIFT_MIN_TOKENS == drift.tolerance
    [(name, phase, detail)] = world.drift_rows()
    assert (name, phase) == ("acct-1b", "incident")
    assert f"Anthropic counted {drift.upstream.total:,} tokens" in detail
    assert f"the pool recorded {drift.pool.total:,} tokens" in detail
    assert f"{drift.excess:,} more than the pool sent" in detail

    assert await world.send_alerts() == 1
    [message] = world.posted()
    assert message.text is not None and "Usage drift: acct-1b" in message.text
    assert f"{drift.excess:,}" in message.text and f"{drift.upstream.total:,}" in message.text
    for key in world.built.api_keys:
        assert key not in message.text and key[14:-4] not in str(message.blocks)

    # the next syncs see the same drift: the incident is open, nothing more is stored or sent
    again = await check_usage_drift(world.runtime)
    assert [c.account_name for c in again.drifting] == ["acct-1b"] and again.raised == ()
    assert await world.send_alerts() == 0 and len(world.drift_rows()) == 1

    # an hour later the other client's tokens are out of the window: one recovery note
    later = await check_usage_drift(world.runtime, now=utcnow() + timedelta(hours=2))
    assert later.drifting == [] and [c.account_name for c in later.ended] == ["acct-1b"]
    assert [(n, p) for n, p, _ in world.drift_rows()] == [("acct-1b", "incident"), ("acct-1b", "recovery")]
    assert await world.send_alerts() == 1
    assert "Usage matches again: acct-1b" in (world.posted()[-1].text or "")


async def test_a_drift_is_in_the_tables_notes(world: DriftWorld) -> None:
    world.another_client_spends("acct-1")
    check = await check_usage_drift(world.runtime)
    [drift] = check.drifting
    _, description = capacity_table(
        [], {k: u.as_dict() for k, u in (check.usage or {}).items()}, notes=check.notes()
    )
    assert (
        "Usage drift on acct-1:" in description and f"{drift.excess:,} more than the pool sent" in description
    )
    assert check.as_dict()["drifting"] == ["acct-1"] and check.as_dict()["alerts_raised"] == 1


@pytest.mark.parametrize(
    ("admin_key", "base_url", "said"),
    [
        ("sk-ant-admin01-" + "x" * 86 + "AA", None, "answered 401 (check ANTHROPIC_ADMIN_API_KEY)"),
        (ADMIN_KEY, "http://127.0.0.1:9", "unreachable: ConnectError"),
    ],
    ids=["refused", "unreachable"],
)
async def test_a_failing_admin_key_is_a_warning_and_changes_no_alert(
    world: DriftWorld, admin_key: str, base_url: str | None, said: str
) -> None:
    world.another_client_spends("acct-1")
    settings = replace(
        world.runtime.settings,
        anthropic_admin_api_key=Secret(admin_key),
        anthropic_base_url=base_url or world.runtime.settings.anthropic_base_url,
    )
    runtime = Runtime(settings=settings, config=world.runtime.config, _db=world.runtime.db)
    check = await check_usage_drift(runtime)
    assert check.warning is not None and said in check.warning
    assert admin_key not in check.warning and check.usage is None and check.comparisons == ()
    assert world.drift_rows() == []
    _, description = capacity_table([], None, notes=check.notes())
    assert "Usage drift not checked" in description and said in description


async def test_without_an_admin_key_nothing_is_read(
    simulated_runtime_factory: Callable[..., SimulatedRuntime],
) -> None:
    built = simulated_runtime_factory(SCENARIO)
    check = await check_usage_drift(built.runtime)
    assert check.usage is None and check.warning is None and check.comparisons == ()
    assert check.notes() == ["Usage drift not checked: ANTHROPIC_ADMIN_API_KEY is not set."]


async def test_the_admin_api_lists_the_organizations_keys_by_id_and_hint(world: DriftWorld) -> None:
    world.built.sim.revoke("acct-1b")
    async with AdminApi.open(world.runtime.settings) as admin:
        listed = {k.name: k for k in await admin.api_keys()}
    assert set(listed) == {"acct-1", "acct-1b"}
    for name, key in listed.items():
        spec = world.built.sim.key(name)
        assert key.id == spec.id
        assert key.partial_key_hint.startswith(spec.key[:16]) and key.partial_key_hint.endswith(spec.key[-4:])
        assert spec.key not in key.partial_key_hint
    assert (listed["acct-1"].status, listed["acct-1b"].status) == ("active", "inactive")
