"""The operator's config: defaults, the shipped file, and clear errors with JSON paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from claude_pool.core.config import Strategy, load_config
from claude_pool.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_loads_with_the_documented_defaults() -> None:
    config = load_config(REPO / "config" / "multi-account.json", env={})
    assert config.selection.strategy is Strategy.LEAST_LOADED
    assert config.capacity.sync_interval_seconds == 60
    assert (config.circuit_breaker.failure_threshold, config.circuit_breaker.timeout_seconds) == (5, 300)
    assert config.alerts.thresholds == (0.8, 0.95, 1.0)
    assert {"free", "pro", "enterprise"} <= set(config.tiers)


def test_missing_file_means_defaults() -> None:
    assert load_config(REPO / "config" / "nope.json", env={}).selection.strategy is Strategy.LEAST_LOADED


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "multi-account.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("data", "path_in_error", "allowed_in_error"),
    [
        ({"selection": {"strategy": "fastest"}}, "$.selection.strategy", "least_loaded"),
        ({"tiers": {"free": {"requestsPerMinute": 0, "inputTokensPerMinute": 1, "outputTokensPerMinute": 1}}},
         "$.tiers.free.requestsPerMinute", "greater than 0"),
        ({"alerts": {"thresholds": [0.5, 1.5]}}, "$.alerts.thresholds", "(0, 1]"),
        ({"circuitBreaker": {"failureThreshold": 0}}, "$.circuitBreaker.failureThreshold", "greater than or equal to 1"),
        ({"selection": {"stratgey": "round_robin"}}, "$.selection.stratgey", "unknown setting"),
    ],
)
def test_invalid_config_names_the_json_path_and_what_is_allowed(
    tmp_path: Path, data: object, path_in_error: str, allowed_in_error: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data), env={})
    text = str(info.value)
    assert path_in_error in text
    assert allowed_in_error in text


def test_a_bad_tier_limit_is_reported_at_its_own_path(tmp_path: Path) -> None:
    tiers = {t: {"requestsPerMinute": 1, "inputTokensPerMinute": 1, "outputTokensPerMinute": 1}
             for t in ("free", "pro", "enterprise")}
    tiers["pro"]["outputTokensPerMinute"] = -5
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, {"tiers": tiers}), env={})
    assert "$.tiers.pro.outputTokensPerMinute" in str(info.value)


def test_broken_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "multi-account.json"
    path.write_text('{"selection": {"strategy": }')
    with pytest.raises(ConfigError, match="line 1, column"):
        load_config(path, env={})


def test_environment_overrides_apply_and_are_validated(tmp_path: Path) -> None:
    path = _write(tmp_path, {})
    config = load_config(path, env={"CLAUDE_POOL__selection__strategy": "round_robin",
                                    "CLAUDE_POOL__alerts__thresholds": "[0.5, 0.9]"})
    assert config.selection.strategy is Strategy.ROUND_ROBIN
    assert config.alerts.thresholds == (0.5, 0.9)
    with pytest.raises(ConfigError, match=r"\$\.selection\.maxAttempts"):
        load_config(path, env={"CLAUDE_POOL__selection__maxAttempts": "0"})


def test_the_standard_tiers_must_stay_defined(tmp_path: Path) -> None:
    one = {"requestsPerMinute": 1, "inputTokensPerMinute": 1, "outputTokensPerMinute": 1}
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, {"tiers": {"free": one, "gold": one}}), env={})
    assert "$.tiers" in str(info.value) and "pro, enterprise" in str(info.value)
