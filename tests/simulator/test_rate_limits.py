"""Rate limits as the real client sees them: 429s at the rate the buckets imply, headers that track them.

Timing here only bounds counts from both sides with the elapsed time actually measured, so a slow or
busy machine widens nothing it should not: the lower bounds do not depend on speed at all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anthropic
import pytest

from claude_pool.simulator import Limits, OutputSpec, RunningSimulator, Scenario

from .conftest import HELLO, MODEL

# 8 + ceil(368 / 4) = 100 input tokens.
HUNDRED_TOKENS = [{"role": "user", "content": "x" * 368}]


def send(client: anthropic.Anthropic, n: int, **params: Any) -> list[tuple[int, dict[str, str]]]:
    """``n`` requests back to back; (status, headers) of each."""
    params = {"model": MODEL, "max_tokens": 16, "messages": HELLO, **params}
    results = []
    for _ in range(n):
        try:
            raw = client.messages.with_raw_response.create(**params)
            results.append((raw.status_code, dict(raw.headers)))
        except anthropic.RateLimitError as exc:
            results.append((429, dict(exc.response.headers)))
    return results


def test_rpm_admits_capacity_then_the_refill_rate(
    anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any]
) -> None:
    rate = 2.0  # 120 RPM: capacity 120, 2 requests/s
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, rpm=120))
    client = client_for(sim)

    start = time.monotonic()
    burst = send(client, 160)
    burst_end = time.monotonic()
    admitted = sum(1 for status, _ in burst if status == 200)
    assert 120 <= admitted <= 120 + math.ceil(rate * (burst_end - start)) + 1
    refused = [h for status, h in burst if status == 429]
    assert refused and all(h["retry-after"] == "1" for h in refused)  # 0.5 s to the next, rounded up

    time.sleep(1.5)  # on purpose: the refill over real time is what is measured (3 requests' worth)
    again = send(client, 10)
    end = time.monotonic()
    admitted_again = sum(1 for status, _ in again if status == 200)
    assert math.floor(rate * 1.5) <= admitted_again <= math.ceil(rate * (end - burst_end)) + 1

    stats = sim.stats().key("acct-1")
    assert stats["served"] == admitted + admitted_again  # the client's tally is the simulator's
    assert stats["rejected_rate_limit_requests"] == 170 - stats["served"]


def test_itpm_refuses_by_input_tokens(
    anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any]
) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, rpm=1000, itpm=600))  # 10 tokens/s
    start = time.monotonic()
    results = send(client_for(sim), 10, messages=HUNDRED_TOKENS)
    elapsed = time.monotonic() - start
    admitted = sum(1 for status, _ in results if status == 200)
    assert 6 <= admitted <= 6 + math.ceil(10 * elapsed / 100)
    stats = sim.stats().key("acct-1")
    assert stats["rejected_rate_limit_input_tokens"] == 10 - admitted
    assert stats["input_tokens"] == 100 * admitted
    assert results[-1][1]["retry-after"] == "10"  # 100 tokens at 10 tokens/s


def test_otpm_charges_max_tokens_then_refunds_the_unused(
    anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any]
) -> None:
    sc = Scenario.uniform(accounts=1, rpm=1000, otpm=600, round_tokens_to=1, output=OutputSpec(mode="fixed", tokens=10))
    sim = anthropic_sim_factory(sc)
    client = client_for(sim)

    # A stream's headers leave while it is in flight: max_tokens (200) is charged in full.
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=200, messages=HELLO, stream=True)
    assert 400 <= int(raw.headers["anthropic-ratelimit-output-tokens-remaining"]) <= 401
    for _ in raw.parse():
        pass
    # Once answered, only the 10 tokens produced stay charged (one more request's 10 besides).
    [(status, headers)] = send(client, 1, max_tokens=200)
    assert status == 200
    assert 580 <= int(headers["anthropic-ratelimit-output-tokens-remaining"]) <= 585

    # Each request needs 200 of room but costs 10: 600 - 20 spent -> 39 more fit before room < 200.
    start = time.monotonic()
    results = send(client, 50, max_tokens=200)
    elapsed = time.monotonic() - start
    admitted = sum(1 for status, _ in results if status == 200)
    assert 39 <= admitted <= 39 + math.ceil(10 * (elapsed + 0.5) / 10) + 1
    assert sim.stats().key("acct-1")["rejected_rate_limit_output_tokens"] == 50 - admitted


def test_headers_track_the_bucket(
    anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any]
) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, rpm=10, itpm=10_000, round_tokens_to=1))
    before = time.time()
    results = send(client_for(sim), 11)
    for i, (status, headers) in enumerate(results[:10]):
        assert status == 200
        assert int(headers["anthropic-ratelimit-requests-remaining"]) in (9 - i, 10 - i)
        used = 11 * (i + 1)  # HELLO is 11 input tokens
        assert 10_000 - used <= int(headers["anthropic-ratelimit-input-tokens-remaining"]) <= 10_000 - used + 20
    status, headers = results[10]
    assert status == 429 and headers["anthropic-ratelimit-requests-remaining"] == "0"
    reset = datetime.fromisoformat(headers["anthropic-ratelimit-requests-reset"].replace("Z", "+00:00")).timestamp()
    assert before + 50 <= reset <= time.time() + 61  # ten requests at 1 per 6 s: full again in ~60 s


def test_token_remaining_rounds_down_to_the_thousand(
    anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any]
) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, itpm=30_000, otpm=8_000))
    [(_, headers)] = send(client_for(sim), 1, max_tokens=10)
    assert headers["anthropic-ratelimit-input-tokens-remaining"] == "29000"
    assert headers["anthropic-ratelimit-tokens-remaining"] == "7000"  # the tighter of the two
    assert headers["anthropic-ratelimit-tokens-limit"] == "8000"


def test_keys_of_one_org_share_one_bucket_set(
    anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any]
) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=2, keys_per_org=2, rpm=3))
    assert [s for s, _ in send(client_for(sim, "acct-1"), 3)] == [200, 200, 200]
    [(status, headers)] = send(client_for(sim, "acct-1b"), 1)
    assert status == 429 and headers["anthropic-ratelimit-requests-remaining"] == "0"
    # Another organization is untouched.
    assert [s for s, _ in send(client_for(sim, "acct-2"), 3)] == [200, 200, 200]
    stats = sim.stats()
    org1 = sim.key("acct-1").org
    assert stats.org(org1)["served"] == 3
    assert stats.org(org1)["rejected_rate_limit_requests"] == 1
    assert stats.key("acct-1b")["rejected_rate_limit_requests"] == 1
    assert stats.total["served"] == 6


@pytest.mark.parametrize(("limit", "cause"), [("rpm", "requests"), ("itpm", "input_tokens"), ("otpm", "output_tokens")])
def test_live_limit_change(
    anthropic_sim_factory: Callable[..., RunningSimulator], client_for: Callable[..., Any], limit: str, cause: str
) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, rpm=100, itpm=10_000, otpm=10_000))
    sim.set_limits(sim.orgs[0].id, Limits(**{"rpm": 100, "itpm": 10_000, "otpm": 10_000, limit: 1}))
    client = client_for(sim)
    if limit == "rpm":
        client.messages.create(model=MODEL, max_tokens=2, messages=HELLO)  # the one request a minute
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model=MODEL, max_tokens=2, messages=HELLO)
    assert info.value.response.headers[f"anthropic-ratelimit-{cause.replace('_', '-')}-limit"] == "1"
    assert sim.stats().total[f"rejected_rate_limit_{cause}"] == 1
