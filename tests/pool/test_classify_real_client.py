"""The policy against what the real ``anthropic`` client raises from the local simulator's wire
protocol (the constructors in test_classify.py could drift from what the client builds)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from claude_pool.pool.classify import BreakerEffect, ErrorPolicy, OutcomeKind, Retry
from claude_pool.simulator import OutputSpec, RunningSimulator, Scenario

MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "hello there"}]
NOW = 1_800_000_000.0


@pytest.fixture
def client(anthropic_sim: RunningSimulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        api_key=anthropic_sim.key("acct-1").key, base_url=anthropic_sim.base_url, max_retries=0, timeout=2.0
    ) as c:
        yield c


def _raised(client: anthropic.Anthropic, **kwargs: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        if kwargs.pop("stream", False):
            for _ in client.messages.create(model=MODEL, max_tokens=200, messages=HELLO, stream=True):
                pass
        else:
            client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    return info.value


@pytest.mark.parametrize(
    ("fault", "kind", "breaker", "retry"),
    [
        ({"kind": "billing"}, OutcomeKind.SPEND_EXHAUSTED, BreakerEffect.NOT_COUNTED, Retry.OTHER_ACCOUNT),
        ({"kind": "spend_cap"}, OutcomeKind.SPEND_EXHAUSTED, BreakerEffect.NOT_COUNTED, Retry.OTHER_ACCOUNT),
        ({"kind": "ramp", "retry_after": 7}, OutcomeKind.RATE_LIMITED, BreakerEffect.NOT_COUNTED,
         Retry.OTHER_ACCOUNT),
        ({"kind": "overloaded"}, OutcomeKind.OVERLOADED, BreakerEffect.NOT_COUNTED,
         Retry.ANY_ACCOUNT_AFTER_BACKOFF),
        ({"kind": "error", "status": 500}, OutcomeKind.FAILURE, BreakerEffect.FAILURE, Retry.OTHER_ACCOUNT),
        ({"kind": "error", "status": 503}, OutcomeKind.FAILURE, BreakerEffect.FAILURE, Retry.OTHER_ACCOUNT),
        ({"kind": "reset"}, OutcomeKind.FAILURE, BreakerEffect.FAILURE, Retry.OTHER_ACCOUNT),
    ],
)
def test_each_fault_from_the_wire(
    anthropic_sim: RunningSimulator, client: anthropic.Anthropic, fault: dict[str, Any], kind: OutcomeKind,
    breaker: BreakerEffect, retry: Retry,
) -> None:
    anthropic_sim.set_faults([fault])
    exc = _raised(client)
    outcome = ErrorPolicy(clock=lambda: NOW).classify(exc, account_id="acct-1")
    assert (outcome.kind, outcome.breaker, outcome.retry) == (kind, breaker, retry)
    assert outcome.error is not None and outcome.error.__cause__ is exc
    if fault["kind"] == "ramp":
        assert outcome.cooldown_until == NOW + 7


def test_unknown_key_is_bad_credentials(anthropic_sim: RunningSimulator) -> None:
    secret = "sk-ant-api03-" + "n" * 40 + "Wx7z"
    with anthropic.Anthropic(api_key=secret, base_url=anthropic_sim.base_url, max_retries=0) as c:
        exc = _raised(c)
    outcome = ErrorPolicy().classify(exc, account_id="acct-x")
    assert outcome.kind is OutcomeKind.BAD_CREDENTIALS and outcome.account_status == "invalid_credentials"
    assert outcome.error is not None and secret not in str(outcome.error)


def test_error_event_after_the_200_is_overloaded(anthropic_sim_factory: Any) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, output=OutputSpec(mode="fixed", tokens=100),
                                                 round_tokens_to=1, stream_chunk_tokens=5))
    sim.set_faults([{"kind": "stream_error", "after_tokens": 20}])
    with anthropic.Anthropic(api_key=sim.key("acct-1").key, base_url=sim.base_url, max_retries=0) as c:
        exc = _raised(c, stream=True)
    outcome = ErrorPolicy().classify(exc, account_id="acct-1")
    assert outcome.kind is OutcomeKind.OVERLOADED and outcome.breaker is BreakerEffect.NOT_COUNTED
