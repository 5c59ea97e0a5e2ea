from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import claude_pool.simulator as simulator_pkg
from claude_pool.simulator import FaultRule, Limits, Scenario, count_input_tokens, output_text
from claude_pool.simulator.tokens import output_tokens_for

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "simulator-scenario.example.yaml"
KEY_SHAPE = re.compile(r"^sk-ant-api03-[A-Za-z0-9_-]{40,}$")


def test_every_exported_name_exists() -> None:
    modules = [importlib.import_module(f"claude_pool.simulator.{m.name}")
               for m in pkgutil.iter_modules(simulator_pkg.__path__)]
    for module in [simulator_pkg, *modules]:
        assert module.__all__, module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_count_input_tokens_rule() -> None:
    assert count_input_tokens({"messages": [{"role": "user", "content": ""}]}) == 8
    assert count_input_tokens({"messages": [{"role": "user", "content": "abcd"}]}) == 9
    assert count_input_tokens({"messages": [{"role": "user", "content": "abcde"}]}) == 10
    body = {
        "system": [{"type": "text", "text": "abcd"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "abcd"}]},
            {"role": "assistant", "content": "abcd"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "abcd"}]},
        ],
    }
    assert count_input_tokens(body) == 8 + 4
    # UTF-8 bytes, not characters: "é" is two bytes.
    assert count_input_tokens({"messages": [{"role": "user", "content": "éé"}]}) == 9


def test_output_text_is_exactly_n_tokens_when_fed_back() -> None:
    for n in (1, 7, 100, 5000):
        assert count_input_tokens({"messages": [{"role": "user", "content": output_text(n)}]}) == 8 + n


@given(st.binary(max_size=64), st.integers(1, 100_000), st.integers(0, 2**40))
def test_output_length_within_bounds_and_deterministic(raw: bytes, max_tokens: int, seed: int) -> None:
    n = output_tokens_for(raw, max_tokens, seed=seed, mode="random")
    assert 1 <= n <= max_tokens
    assert n == output_tokens_for(raw, max_tokens, seed=seed, mode="random")
    assert 1 <= output_tokens_for(raw, max_tokens, seed=seed, mode="fraction", fraction=0.3) <= max_tokens
    assert output_tokens_for(raw, max_tokens, seed=seed, mode="fixed", tokens=50) == min(50, max_tokens)


def test_uniform_keys_look_real_and_follow_the_seed() -> None:
    a = Scenario.uniform(accounts=3, seed=1)
    b = Scenario.uniform(accounts=3, seed=1)
    c = Scenario.uniform(accounts=3, seed=2)
    assert [k.key for k in a.keys] == [k.key for k in b.keys]
    assert not {k.key for k in a.keys} & {k.key for k in c.keys}
    assert all(KEY_SHAPE.match(k.key) for k in a.keys)
    assert all(o.admin_key.startswith("sk-ant-admin01-") for o in a.orgs)
    assert len({k.org for k in a.keys}) == 3
    assert a.keys[0].key not in repr(a.keys[0])  # repr shows only a prefix


def test_keys_per_org_share_an_org() -> None:
    sc = Scenario.uniform(accounts=2, keys_per_org=2)
    assert [k.name for k in sc.keys] == ["acct-1", "acct-1b", "acct-2", "acct-2b"]
    assert sc.key("acct-1").org == sc.key("acct-1b").org != sc.key("acct-2").org


def test_round_trip_through_dict() -> None:
    sc = Scenario.uniform(accounts=2, rpm=7, faults=(FaultRule("error", rate=0.5, status=503, targets=("acct-1",)),))
    assert Scenario.from_dict(sc.to_dict()) == sc


def test_example_scenario_file_loads() -> None:
    sc = Scenario.from_file(EXAMPLE)
    assert sc.keys and sc.orgs
    assert any(f.kind == "overloaded" for f in sc.faults)


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "explode"},
        {"kind": "error", "status": 502},
        {"kind": "revoke", "status": 500},
        {"kind": "error", "rate": 2},
    ],
)
def test_bad_fault_rules_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FaultRule.from_dict(bad)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Limits(0, 1, 1)
