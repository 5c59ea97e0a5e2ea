"""Delegation through the pool against the simulator: success, and each row of the error table."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from claude_pool.breaker import BreakerView, CircuitBreaker, open_breaker_store
from claude_pool.capacity import BucketView
from claude_pool.core.config import load_config
from claude_pool.core.errors import CallerRequestError, DecryptionError, NoAccountAvailable, UpstreamFailure
from claude_pool.pool import Pool
from claude_pool.pool._shared_overload import OVERLOAD_BREAKER_ID, closed_for
from claude_pool.pool.models import DelegationRequest
from claude_pool.simulator import FaultRule, Scenario
from claude_pool.storage import AccountStatus

from .conftest import PoolWorld

REQ = DelegationRequest(organization_id="tenant-a", message="Say hello", max_tokens=64, user_id="u1")


async def test_a_delegation_succeeds_with_usage_and_logs_the_account_selection(
    world_pool: tuple[PoolWorld, Pool], caplog: pytest.LogCaptureFixture
) -> None:
    world, pool = world_pool
    with caplog.at_level(logging.INFO, logger="claude_pool.pool"):
        result = await pool.delegate(REQ)
    assert result.account_id in world.account_ids.values()
    assert result.text and result.usage.output_tokens > 0 and result.usage.input_tokens > 0
    assert [a.outcome for a in result.attempts] == ["success"]
    assert any("account selection" in r.getMessage() for r in caplog.records)
    assert world.sim.stats().total["served"] == 1


async def test_a_streamed_delegation_assembles_the_text(world_pool: tuple[PoolWorld, Pool]) -> None:
    _, pool = world_pool
    chunks: list[str] = []

    async def on_text(text: str) -> None:
        chunks.append(text)

    result = await pool.delegate(REQ.model_copy(update={"stream": True}), on_text=on_text)
    assert result.text == "".join(chunks) and len(chunks) >= 1
    assert result.usage.output_tokens > 0 and result.stop_reason is not None


def _fault(world: PoolWorld, kind: str, name: str = "acct-1", **kw: object) -> None:
    world.sim.add_fault(FaultRule(kind=kind, targets=(name,), **kw))  # type: ignore[arg-type]


async def test_a_5xx_fails_over_and_counts_against_the_breaker(make_world: Callable[..., PoolWorld]) -> None:
    world = make_world()
    _fault(world, "error", status=503)
    bad = world.account_ids["acct-1"]
    async with world.open_pool() as pool:
        result = await pool.delegate(REQ.model_copy(update={"strategy": "priority"}))
        views = await pool.breaker.states([bad])
    # priority ties are broken at random: when acct-1 was tried first, it failed and the next served
    first = result.attempts[0]
    if first.account_id == bad:
        assert (first.outcome, first.status_code) == ("failure", 503)
        assert views[bad].consecutive_failures == 1
    assert result.attempts[-1].outcome == "success" and result.account_id != bad
    assert world.sim.stats().key("acct-1")["served"] == 0


async def test_every_5xx_kind_fails_over_to_a_healthy_account(make_world: Callable[..., PoolWorld]) -> None:
    world = make_world(Scenario.uniform(accounts=2, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    bad = world.account_ids["acct-1"]
    async with world.open_pool() as pool:
        for status in (500, 503, 504):
            world.sim.set_faults([FaultRule(kind="error", status=status, targets=("acct-1",))])
            result = await pool.delegate(REQ.model_copy(update={"strategy": "round_robin"}))
            assert result.account_id == world.account_ids["acct-2"]
        world.sim.set_faults([FaultRule(kind="reset", targets=("acct-1",))])
        result = await pool.delegate(REQ.model_copy(update={"strategy": "round_robin"}))
        assert result.account_id == world.account_ids["acct-2"]
        views = await pool.breaker.states([bad])
    outcomes = world.sim.stats().key("acct-1")
    assert outcomes["served"] == 0
    assert views[bad].consecutive_failures == outcomes["received"] >= 2


async def test_a_timeout_fails_over(make_world: Callable[..., PoolWorld]) -> None:
    world = make_world(Scenario.uniform(accounts=2, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    _fault(world, "timeout", hang_s=5)
    async with world.open_pool() as pool:
        pool.call_timeout = 0.5
        results = [await pool.delegate(REQ.model_copy(update={"strategy": "round_robin"})) for _ in range(2)]
    assert all(r.account_id == world.account_ids["acct-2"] for r in results)
    assert any(a.outcome == "failure" for r in results for a in r.attempts)


async def test_the_breaker_opens_after_five_failures_and_the_account_gets_nothing_more(
    make_world: Callable[..., PoolWorld],
) -> None:
    world = make_world(Scenario.uniform(accounts=2, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    _fault(world, "error", status=500)
    bad = world.account_ids["acct-1"]
    async with world.open_pool() as pool:
        # round robin starts every request on the account after the last one chosen: acct-1 is
        # tried first by every request until its breaker opens
        for _ in range(8):
            await pool.delegate(REQ.model_copy(update={"strategy": "round_robin"}))
        sent_when_open = world.sim.stats().key("acct-1")["received"]
        for _ in range(10):
            result = await pool.delegate(REQ.model_copy(update={"strategy": "round_robin"}))
            assert result.account_id == world.account_ids["acct-2"]
        view = (await pool.breaker.states([bad]))[bad]
    assert view.state.value == "open"
    assert sent_when_open == 5  # five consecutive failures, then nothing
    assert world.sim.stats().key("acct-1")["received"] == 5
    with world.runtime.db.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT to_state FROM breaker_transitions WHERE account_id = :a"), {"a": bad}
        ).all()
    assert [r[0] for r in rows] == ["open"]


async def test_a_caller_error_is_returned_without_retry_and_without_counting(
    world_pool: tuple[PoolWorld, Pool],
) -> None:
    world, pool = world_pool
    with pytest.raises(CallerRequestError) as info:
        await pool.delegate(REQ.model_copy(update={"model": "gpt-4"}))
    assert info.value.status_code == 404
    assert world.sim.stats().total["received"] == 1
    views = await pool.breaker.states(list(world.account_ids.values()))
    assert all(v.consecutive_failures == 0 for v in views.values())


async def test_a_revoked_key_marks_the_account_and_fails_over(make_world: Callable[..., PoolWorld]) -> None:
    world = make_world()
    world.sim.revoke("acct-1")
    async with world.open_pool() as pool:
        results = [await pool.delegate(REQ.model_copy(update={"strategy": "round_robin"})) for _ in range(3)]
    assert all(r.account_id != world.account_ids["acct-1"] for r in results)
    assert world.runtime.accounts.get(world.account_ids["acct-1"]).status == AccountStatus.INVALID_CREDENTIALS
    assert world.sim.stats().key("acct-1")["received"] == 1


async def test_a_spend_cap_marks_the_account_until_the_first_of_next_month(
    make_world: Callable[..., PoolWorld],
) -> None:
    world = make_world()
    _fault(world, "spend_cap")
    async with world.open_pool() as pool:
        for _ in range(3):
            await pool.delegate(REQ.model_copy(update={"strategy": "round_robin"}))
    account = world.runtime.accounts.get(world.account_ids["acct-1"])
    assert account.status == AccountStatus.SPEND_EXHAUSTED
    assert account.status_until is not None and account.status_until.day == 1


async def test_a_429_cools_the_account_down_and_fails_over_without_counting(
    make_world: Callable[..., PoolWorld],
) -> None:
    world = make_world()
    _fault(world, "ramp", retry_after=30)
    bad = world.account_ids["acct-1"]
    async with world.open_pool() as pool:
        for _ in range(4):
            result = await pool.delegate(REQ.model_copy(update={"strategy": "round_robin"}))
            assert result.account_id != bad
        assert world.sim.stats().key("acct-1")["received"] == 1  # cooled down after the first 429
        views = await pool.breaker.states([bad])
    assert views[bad].consecutive_failures == 0
    assert world.runtime.accounts.get(bad).status == AccountStatus.ACTIVE


async def test_a_529_backs_off_and_retries(make_world: Callable[..., PoolWorld]) -> None:
    world = make_world(Scenario.uniform(accounts=1, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    world.sim.add_fault(FaultRule(kind="overloaded", end=0.8))
    async with world.open_pool() as pool:
        pool.policy.overload_backoff_seconds = 0.5
        result = await pool.delegate(REQ.model_copy(update={"deadline": time.time() + 30}))
    assert result.attempts[0].outcome == "overloaded"
    assert result.attempts[-1].outcome == "success"


async def test_during_a_529_window_the_requests_back_off_as_one_and_are_served_after_it(
    make_world: Callable[..., PoolWorld],
) -> None:
    """Anthropic answers 529 to every key for 2 s. Twelve requests sent at once all meet it; then
    they wait at one gate and one of them tries at each back-off's end (0.5 s, doubling), instead
    of each retrying on its own schedule: on their own, all three attempts of each (at 0, 0.5 and
    1.5 s) would meet the overload, 36 calls into it, and every request would fail."""
    world = make_world(Scenario.uniform(accounts=3, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    world.sim.add_fault(FaultRule(kind="overloaded", end=2.0))
    async with world.open_pool() as pool:
        pool.policy.overload_backoff_seconds = 0.5
        deadline = time.time() + 20
        results = await asyncio.gather(
            *(pool.delegate(REQ.model_copy(update={"deadline": deadline})) for _ in range(12))
        )
    assert all(r.text for r in results)
    overloaded = world.sim.stats().total["fault_529"]
    assert 12 <= overloaded <= 12 + 6, overloaded  # the first wave, then one try per back-off


async def test_two_workers_on_one_store_back_off_from_a_529_window_as_one(
    make_world: Callable[..., PoolWorld],
) -> None:
    """The same 2 s window met by two workers (pools on one store), six requests each: their gates
    meet in the store, so one probe at a time goes for both (at 0.5 s, then 1.5 s: two 529s) and its
    answer opens both. Each gate on its own would probe on its own schedule: four 529s or more."""
    world = make_world(Scenario.uniform(accounts=3, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    world.sim.add_fault(FaultRule(kind="overloaded", end=2.0))
    async with world.open_pool() as first, world.open_pool() as second:
        for pool in (first, second):
            pool.policy.overload_backoff_seconds = 0.5
        deadline = time.time() + 20
        results = await asyncio.gather(
            *(pool.delegate(REQ.model_copy(update={"deadline": deadline})) for pool in (first, second) for _ in range(6))
        )
    assert all(r.text for r in results)
    overloaded = world.sim.stats().total["fault_529"]
    assert 12 <= overloaded <= 12 + 3, overloaded


async def test_a_worker_that_met_no_529_sends_nothing_while_another_workers_back_off_runs(
    make_world: Callable[..., PoolWorld],
) -> None:
    """The first worker meets a 529 and backs off 0.5 s; the window is over at 0.3 s. The second
    worker, which has met no 529 itself, reads the shared gate with the breakers on its admission
    and waits for the back-off too, instead of spending an attempt on a 529 of its own to learn it."""
    world = make_world(Scenario.uniform(accounts=3, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    world.sim.add_fault(FaultRule(kind="overloaded", end=0.3))
    async with world.open_pool() as first, world.open_pool() as second:
        for pool in (first, second):
            pool.policy.overload_backoff_seconds = 0.5
        request = REQ.model_copy(update={"deadline": time.time() + 20})
        first_served = asyncio.create_task(first.delegate(request))
        await _until(lambda: world.sim.stats().total["fault_529"] == 1)
        while closed_for((await second.breaker.states([OVERLOAD_BREAKER_ID]))[OVERLOAD_BREAKER_ID], time.time()) == 0:
            await asyncio.sleep(0.005)
        assert world.sim.elapsed() < 0.3  # the window is still on: a call now would meet a 529
        second_result = await second.delegate(request)
        first_result = await first_served
    assert [a.outcome for a in first_result.attempts] == ["overloaded", "success"]
    assert [a.outcome for a in second_result.attempts] == ["success"]
    assert world.sim.stats().total["fault_529"] == 1


async def test_every_account_cooling_down_explains_per_account_and_a_request_is_queued_behind_it(
    make_world: Callable[..., PoolWorld],
) -> None:
    world = make_world(Scenario.uniform(accounts=2, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    async with world.open_pool() as pool:
        accounts = await pool.directory.all()
        for acc in accounts:
            await pool.capacity.cool_down(acc.candidate.bucket_id, time.time() + 1.5)
        started = time.monotonic()
        with pytest.raises(NoAccountAvailable) as info:
            await pool.delegate(REQ.model_copy(update={"max_queue_seconds": 0}))
        assert time.monotonic() - started < 1.0  # refused at once, not after waiting
        text = str(info.value)
        assert "acct-1" in text and "acct-2" in text and "cooling down" in text and "until" in text
        assert info.value.retry_after is not None and 0 < info.value.retry_after <= 1.5
        result = await pool.delegate(REQ.model_copy(update={"deadline": time.time() + 10}))
        assert result.text and time.monotonic() - started >= 1.0


async def test_a_request_that_cannot_be_served_before_its_deadline_is_refused_at_once(
    make_world: Callable[..., PoolWorld],
) -> None:
    world = make_world(Scenario.uniform(accounts=1, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    async with world.open_pool() as pool:
        (acc,) = await pool.directory.all()
        await pool.capacity.cool_down(acc.candidate.bucket_id, time.time() + 30)
        started = time.monotonic()
        with pytest.raises(NoAccountAvailable, match="before the deadline") as info:
            await pool.delegate(REQ.model_copy(update={"deadline": time.time() + 5}))
        assert time.monotonic() - started < 1.0
        assert info.value.retry_after is not None and info.value.retry_after > 5
    assert world.sim.stats().total["received"] == 0


async def test_a_stream_broken_after_it_started_is_a_failure_never_a_success(
    make_world: Callable[..., PoolWorld],
) -> None:
    world = make_world(Scenario.uniform(accounts=1, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    world.sim.add_fault(FaultRule(kind="stream_error", after_tokens=2))
    async with world.open_pool() as pool:
        with pytest.raises(Exception) as info:
            await pool.delegate(REQ.model_copy(update={"stream": True, "max_tokens": 200}))
    assert "overloaded" in str(info.value).lower() or "stream" in str(info.value).lower()
    assert world.sim.stats().total["received"] == 1


async def test_a_stream_cut_before_message_stop_is_a_failure_never_a_success(
    make_world: Callable[..., PoolWorld],
) -> None:
    """A response that ends cleanly mid-message (a proxy dropping a long stream): the caller has
    heard part of an answer, so it is not sent again, and the call is upstream's to charge."""
    world = make_world(Scenario.uniform(accounts=2, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    world.sim.add_fault(FaultRule(kind="stream_cut", after_tokens=2))
    heard: list[str] = []

    async def on_text(text: str) -> None:
        heard.append(text)

    async with world.open_pool() as pool:
        with pytest.raises(UpstreamFailure, match="message_stop") as info:
            await pool.delegate(REQ.model_copy(update={"stream": True, "max_tokens": 200}), on_text=on_text)
    assert info.value.error_type == "stream_cut" and heard
    assert world.sim.stats().total["received"] == 1 and world.sim.stats().total["fault_stream_cut"] == 1


async def test_disabled_accounts_are_never_chosen(make_world: Callable[..., PoolWorld]) -> None:
    world = make_world()
    world.runtime.accounts.disable(world.account_ids["acct-1"])
    async with world.open_pool() as pool:
        for _ in range(6):
            assert (await pool.delegate(REQ)).account_id != world.account_ids["acct-1"]


def test_config_loads() -> None:
    assert load_config(None, env={}).selection.max_attempts == 3


async def test_a_tenant_never_runs_on_another_tenants_accounts(make_world: Callable[..., PoolWorld]) -> None:
    world = make_world()
    other = world.runtime.accounts.update(world.account_ids["acct-1"], {"name": "acct-1"})
    assert other.organization_id == "tenant-a"
    with pytest.raises(NoAccountAvailable, match="tenant-b"):
        async with world.open_pool() as pool:
            await pool.delegate(REQ.model_copy(update={"organization_id": "tenant-b"}))
    assert world.sim.stats().total["received"] == 0


@pytest.mark.parametrize(
    ("fault", "status", "account_status"),
    [
        (FaultRule(kind="billing", targets=("acct-1",)), 402, AccountStatus.SPEND_EXHAUSTED),
        (FaultRule(kind="revoke", status=403, targets=("acct-1",)), 403, AccountStatus.INVALID_CREDENTIALS),
    ],
)
async def test_402_and_403_set_the_account_aside_and_fail_over_without_counting(
    make_world: Callable[..., PoolWorld], fault: FaultRule, status: int, account_status: str
) -> None:
    world = make_world(Scenario.uniform(accounts=2, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    world.sim.add_fault(fault)
    bad = world.account_ids["acct-1"]
    async with world.open_pool() as pool:
        results = [await pool.delegate(REQ.model_copy(update={"strategy": "round_robin"})) for _ in range(3)]
        views = await pool.breaker.states([bad])
    assert all(r.account_id == world.account_ids["acct-2"] for r in results)
    assert any((a.account_id, a.status_code) == (bad, status) for r in results for a in r.attempts)
    assert world.runtime.accounts.get(bad).status == account_status
    assert world.sim.stats().key("acct-1")["received"] == 1
    assert views[bad].consecutive_failures == 0


async def test_a_413_is_the_callers_error_and_is_not_retried(make_world: Callable[..., PoolWorld]) -> None:
    world = make_world(
        Scenario.uniform(accounts=2, rpm=10_000, itpm=10_000_000, otpm=1_000_000, max_body_bytes=2_000)
    )
    async with world.open_pool() as pool:
        with pytest.raises(CallerRequestError) as info:
            await pool.delegate(
                DelegationRequest(organization_id="tenant-a", message="x" * 5_000, max_tokens=16)
            )
    assert info.value.status_code == 413
    assert world.sim.stats().total["received"] == 1  # refused once, never retried on the other account
    assert all(
        world.runtime.accounts.get(a).status == AccountStatus.ACTIVE for a in world.account_ids.values()
    )


# --- every attempt gives its reservation and its permit back, whatever ends it ---------------------

LIMITS = {"rpm": 10_000, "itpm": 10_000_000, "otpm": 6_000}
MAX_TOKENS = 1_000  # a sixth of the output bucket: whether it came back is plain to see


async def _until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    give_up = time.monotonic() + within
    while not condition():
        assert time.monotonic() < give_up, "the condition was not met in time"
        await asyncio.sleep(0.01)


async def _left_behind(pool: Pool, account_id: str) -> tuple[BucketView, BreakerView]:
    """The account's bucket and breaker once an attempt on it ended."""
    (entry,) = await pool.directory.all()
    (view,) = await pool.capacity.view([entry.candidate])
    return view, (await pool.breaker.states([account_id]))[account_id]


async def test_a_cancelled_delegation_gives_its_slot_back_and_counts_nothing(
    make_world: Callable[..., PoolWorld],
) -> None:
    world = make_world(Scenario.uniform(accounts=1, **LIMITS))
    world.sim.add_fault(FaultRule(kind="timeout", hang_s=30))
    async with world.open_pool() as pool:
        call = asyncio.create_task(pool.delegate(REQ.model_copy(update={"max_tokens": MAX_TOKENS})))
        await _until(lambda: world.sim.stats().total["received"] == 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        view, breaker = await _left_behind(pool, world.account_ids["acct-1"])
    assert view.in_flight == 0
    # released (the request stays charged, the tokens come back), not settled as unanswered
    assert view.output_tokens > LIMITS["otpm"] - MAX_TOKENS / 2
    assert breaker.consecutive_failures == 0


async def test_a_failure_of_ours_before_the_call_releases_the_slot_and_raises_as_itself(
    make_world: Callable[..., PoolWorld],
) -> None:
    world = make_world(Scenario.uniform(accounts=1, **LIMITS))
    account = world.account_ids["acct-1"]
    with world.runtime.db.engine.begin() as conn:  # a stored key that no longer decrypts
        conn.execute(
            sa.text("UPDATE claude_accounts SET api_key_encrypted = 'v1.garbage' WHERE id = :a"), {"a": account}
        )
    async with world.open_pool() as pool:
        with pytest.raises(DecryptionError):
            await pool.delegate(REQ.model_copy(update={"max_tokens": MAX_TOKENS}))
        view, breaker = await _left_behind(pool, account)
    assert world.sim.stats().total["received"] == 0
    assert view.in_flight == 0 and view.output_tokens > LIMITS["otpm"] - MAX_TOKENS / 2
    assert breaker.consecutive_failures == 0


async def test_a_stream_cut_by_our_own_text_handler_fails_uncounted_and_keeps_its_reservation(
    make_world: Callable[..., PoolWorld],
) -> None:
    """After the first event the call is upstream's to charge: a failure of the caller's handler
    ends it as a failure (never retried, a half-sent answer must not be sent twice), which the
    breaker does not count, and its reservation stays charged."""
    world = make_world(Scenario.uniform(accounts=1, **LIMITS))

    async def broken_sink(text: str) -> None:
        raise RuntimeError("the caller's sink is closed")

    async with world.open_pool() as pool:
        with pytest.raises(UpstreamFailure, match="the stream failed after it started: RuntimeError"):
            await pool.delegate(
                REQ.model_copy(update={"stream": True, "max_tokens": MAX_TOKENS}), on_text=broken_sink
            )
        view, breaker = await _left_behind(pool, world.account_ids["acct-1"])
    assert world.sim.stats().total["received"] == 1
    assert view.in_flight == 0 and view.output_tokens < LIMITS["otpm"] - MAX_TOKENS / 2
    assert breaker.consecutive_failures == 0


async def test_a_circuit_opened_by_another_worker_since_the_last_reading_is_never_sent_to(
    make_world: Callable[..., PoolWorld],
) -> None:
    """The pool chooses among the accounts whose circuit let calls through when it last read them,
    while it reads them again: an account opened meanwhile by another worker gets nothing, its
    place is given back whole, and another account serves."""
    world = make_world(Scenario.uniform(accounts=2, **LIMITS))
    round_robin = REQ.model_copy(update={"strategy": "round_robin", "max_tokens": MAX_TOKENS})
    async with world.open_pool() as pool:
        first = await pool.delegate(round_robin)  # this pool has now read both circuits closed
        entries = {a.id: a for a in await pool.directory.all()}
        [other] = [a for a in entries if a != first.account_id]  # round robin's next choice
        another_worker = CircuitBreaker(open_breaker_store(world.runtime.settings))
        try:
            await another_worker.force_open(other, "opened by another worker")
        finally:
            await another_worker.aclose()
        result = await pool.delegate(round_robin)
        (view,) = await pool.capacity.view([entries[other].candidate])
    assert result.account_id == first.account_id
    assert [a.account_id for a in result.attempts] == [first.account_id]
    names = {v: k for k, v in world.account_ids.items()}
    assert world.sim.stats().key(names[other])["received"] == 0
    assert view.in_flight == 0  # its reservation given back, unsent: all of it
    assert (view.requests, view.output_tokens) == pytest.approx((LIMITS["rpm"], LIMITS["otpm"]), rel=1e-3)
