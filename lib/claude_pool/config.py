"""The operator's settings: ``config/multi-account.json``, validated at load.

Keys are camelCase, as in the original system's file. An invalid value fails at load with its JSON
path, what it was and what is allowed. Environment overrides use ``CLAUDE_POOL__`` followed by the
path in camelCase segments separated by ``__``, the value parsed as JSON when it parses, e.g.
``CLAUDE_POOL__selection__strategy=round_robin`` or ``CLAUDE_POOL__alerts__thresholds=[0.5,1.0]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from claude_pool.errors import ConfigError

__all__ = [
    "AlertsConfig",
    "BreakerConfig",
    "CapacityConfig",
    "HealthCheckConfig",
    "Limits",
    "PoolConfig",
    "SelectionConfig",
    "Strategy",
    "load_config",
]

ENV_PREFIX = "CLAUDE_POOL__"


class Strategy(StrEnum):
    LEAST_LOADED = "least_loaded"
    ROUND_ROBIN = "round_robin"
    WEIGHTED = "weighted"
    PRIORITY = "priority"
    STICKY = "sticky"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Limits(_Model):
    """Per-minute limits of one account (or capacity group), and optional budgets."""

    requests_per_minute: int = Field(gt=0)
    input_tokens_per_minute: int = Field(gt=0)
    output_tokens_per_minute: int = Field(gt=0)
    daily_token_budget: int | None = Field(default=None, gt=0)
    monthly_token_budget: int | None = Field(default=None, gt=0)
    monthly_spend_budget_usd: float | None = Field(default=None, gt=0)
    max_in_flight: int | None = Field(default=None, gt=0)


class SelectionConfig(_Model):
    strategy: Strategy = Strategy.LEAST_LOADED
    max_attempts: int = Field(default=3, ge=1, le=20)
    sticky_ttl_seconds: int = Field(default=3600, gt=0)


class CapacityConfig(_Model):
    sync_interval_seconds: int = Field(default=60, ge=5)
    lease_timeout_seconds: float = Field(default=600.0, gt=0)
    default_input_token_estimate: int = Field(default=1000, ge=1)
    calibrate_from_headers: bool = True


class BreakerConfig(_Model):
    failure_threshold: int = Field(default=5, ge=1)
    timeout_seconds: float = Field(default=300.0, gt=0)
    half_open_max_calls: int = Field(default=1, ge=1)
    backoff_multiplier: float = Field(default=2.0, ge=1.0)
    max_timeout_seconds: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _max_not_below_timeout(self) -> BreakerConfig:
        if self.max_timeout_seconds < self.timeout_seconds:
            raise ValueError("maxTimeoutSeconds must be at least timeoutSeconds")
        return self


class AlertsConfig(_Model):
    thresholds: tuple[float, ...] = (0.80, 0.95, 1.00)
    announce_recovery: bool = True
    sweep_interval_seconds: int = Field(default=60, ge=5)

    @field_validator("thresholds")
    @classmethod
    def _thresholds_are_fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("give at least one threshold, e.g. [0.8, 0.95, 1.0]")
        for t in value:
            if not 0 < t <= 1:
                raise ValueError(f"each threshold is a fraction in (0, 1], got {t}")
        return tuple(sorted(set(value)))


class HealthCheckConfig(_Model):
    interval_seconds: int = Field(default=300, ge=10)
    method: str = Field(default="count_tokens", pattern="^(count_tokens|message)$")
    model: str = "claude-haiku-5-5"


class EncryptionConfig(_Model):
    algorithm: str = Field(default="aes-256-gcm", pattern="^aes-256-gcm$")


DEFAULT_TIERS: dict[str, Limits] = {
    "free": Limits(requests_per_minute=50, input_tokens_per_minute=30_000, output_tokens_per_minute=8_000),
    "pro": Limits(
        requests_per_minute=1_000, input_tokens_per_minute=450_000, output_tokens_per_minute=90_000
    ),
    "enterprise": Limits(
        requests_per_minute=4_000, input_tokens_per_minute=2_000_000, output_tokens_per_minute=400_000
    ),
}


class PoolConfig(_Model):
    selection: SelectionConfig = SelectionConfig()
    capacity: CapacityConfig = CapacityConfig()
    circuit_breaker: BreakerConfig = BreakerConfig()
    alerts: AlertsConfig = AlertsConfig()
    tiers: dict[str, Limits] = Field(default_factory=lambda: dict(DEFAULT_TIERS))
    health_check: HealthCheckConfig = HealthCheckConfig()
    encryption: EncryptionConfig = EncryptionConfig()
    default_model: str = "claude-sonnet-5-5"

    @field_validator("tiers")
    @classmethod
    def _standard_tiers_present(cls, value: dict[str, Limits]) -> dict[str, Limits]:
        missing = [t for t in ("free", "pro", "enterprise") if t not in value]
        if missing:
            raise ValueError(
                f"tiers must define {', '.join(missing)} (custom tiers may be added beside them)"
            )
        for name in value:
            if not name or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"tier name {name!r} must be letters, digits, '-' or '_'")
        return value

    def limits_for_tier(self, tier: str) -> Limits:
        return self.tiers[tier]


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = "$"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(errors: list[Any]) -> list[str]:
    problems = []
    for err in errors:
        given = err.get("input")
        try:
            shown = json.dumps(given)
        except (TypeError, ValueError):
            shown = type(given).__name__
        if len(shown) > 80:
            shown = shown[:77] + "..."
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check its spelling; keys are camelCase)"
        elif err["type"] == "enum":
            msg = f"must be one of {err['ctx']['expected']}"
        problems.append(f"{_json_path(tuple(err['loc']))}: {msg} (got {shown})")
    return problems


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = parsed
    return raw


def load_config(path: Path | str | None = None, *, env: Mapping[str, str] | None = None) -> PoolConfig:
    """Load and validate the config file (defaults when the file does not exist)."""
    env = os.environ if env is None else env
    source = str(path) if path is not None else "defaults"
    raw: dict[str, Any] = {}
    if path is not None and Path(path).exists():
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(
                source, [f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
            ) from exc
        if not isinstance(loaded, dict):
            raise ConfigError(source, ["$: the file must hold a JSON object"])
        raw = loaded
    raw.pop("$schema", None)
    raw = _apply_env_overrides(raw, env)
    try:
        return PoolConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, _describe(exc.errors())) from None
