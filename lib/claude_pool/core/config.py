"""The pool's rules as the operator writes them: ``config/multi-account.json`` (limits, tiers,
selection, breaker, alerts, pricing), validated at load. Where things are (URLs, keys, paths) comes
from the environment instead: ``settings``.

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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from claude_pool.core.errors import ConfigError

__all__ = [
    "DEFAULT_PRICING",
    "AdmissionConfig",
    "AlertsConfig",
    "BreakerConfig",
    "CapacityConfig",
    "HealthCheckConfig",
    "Limits",
    "ModelPrice",
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
    #: The capacity-sync schedule (``claude-pool serve-flows``, and ``prefect deploy`` through the
    #: build step of prefect.yaml); likewise ``alerts.sweepIntervalSeconds`` and
    #: ``healthCheck.intervalSeconds``.
    sync_interval_seconds: int = Field(default=60, ge=5)
    #: ``capacity_snapshots`` rows older than this are deleted by capacity-sync.
    snapshot_retention_days: int = Field(default=7, ge=1)
    lease_timeout_seconds: float = Field(default=600.0, gt=0)
    default_input_token_estimate: int = Field(default=1000, ge=1)
    calibrate_from_headers: bool = True
    #: "empty": a bucket the pool has never seen may have been drained by another client, so until
    #: upstream's headers calibrate it the pool sends only what refill brings: no 429 at start-up;
    #: the requests queued on that guess ask again once any worker's answer has calibrated the
    #: bucket. "full": trust the configured limits (a drained key then answers 429s at start-up).
    cold_start: Literal["empty", "full"] = "empty"


class AdmissionConfig(_Model):
    """How long a request may be queued for capacity (see DESIGN 4.3 and the README's "Under
    overload"): a queue is absorbed up to ``maxQueueSeconds`` (and the request's deadline) while it
    is young or draining; once it has stood a whole ``standingAfterSeconds`` window without
    draining it is shed down to ``targetQueueSeconds`` until it empties, so that what is served is
    served soon and the rest is refused at once, with the time to retry."""

    max_queue_seconds: float = Field(default=30.0, ge=0)
    target_queue_seconds: float = Field(default=0.1, ge=0)
    standing_after_seconds: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _target_within_max(self) -> AdmissionConfig:
        if self.target_queue_seconds > self.max_queue_seconds:
            raise ValueError("targetQueueSeconds must not exceed maxQueueSeconds")
        return self


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


class ModelPrice(_Model):
    """What one model costs, in US dollars per million tokens: what spend budgets are counted in.
    Cache writes default to 1.25 times the input price and cache reads to 0.1 times, Anthropic's
    usual ratios for 5-minute cache writes."""

    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)
    cache_write_usd_per_mtok: float | None = Field(default=None, ge=0)
    cache_read_usd_per_mtok: float | None = Field(default=None, ge=0)

    def cost_usd(self, *, input_tokens: int, output_tokens: int, cache_write_tokens: int = 0,
                 cache_read_tokens: int = 0) -> float:
        write = self.cache_write_usd_per_mtok
        read = self.cache_read_usd_per_mtok
        return (
            input_tokens * self.input_usd_per_mtok
            + output_tokens * self.output_usd_per_mtok
            + cache_write_tokens * (self.input_usd_per_mtok * 1.25 if write is None else write)
            + cache_read_tokens * (self.input_usd_per_mtok * 0.1 if read is None else read)
        ) / 1_000_000


#: List prices of the current models (USD per million tokens, November 2026). Spend budgets are only
#: as right as these: set your own under ``pricing`` when your contract differs.
DEFAULT_PRICING: dict[str, ModelPrice] = {
    "claude-opus-5-5": ModelPrice(input_usd_per_mtok=4.0, output_usd_per_mtok=20.0,
                                  cache_write_usd_per_mtok=5.0, cache_read_usd_per_mtok=0.2),
    "claude-sonnet-5-5": ModelPrice(input_usd_per_mtok=2.0, output_usd_per_mtok=10.0,
                                    cache_write_usd_per_mtok=2.5, cache_read_usd_per_mtok=0.1),
    "claude-haiku-5-5": ModelPrice(input_usd_per_mtok=0.1, output_usd_per_mtok=0.5,
                                   cache_write_usd_per_mtok=0.125, cache_read_usd_per_mtok=0.01),
    "claude-opus-4-5": ModelPrice(input_usd_per_mtok=5.0, output_usd_per_mtok=25.0),
    "claude-sonnet-4-5": ModelPrice(input_usd_per_mtok=3.0, output_usd_per_mtok=15.0),
    "claude-haiku-4-5": ModelPrice(input_usd_per_mtok=1.0, output_usd_per_mtok=5.0),
}

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
    admission: AdmissionConfig = AdmissionConfig()
    circuit_breaker: BreakerConfig = BreakerConfig()
    alerts: AlertsConfig = AlertsConfig()
    tiers: dict[str, Limits] = Field(default_factory=lambda: dict(DEFAULT_TIERS))
    health_check: HealthCheckConfig = HealthCheckConfig()
    encryption: EncryptionConfig = EncryptionConfig()
    default_model: str = "claude-sonnet-5-5"
    #: Model name (or the start of one, e.g. without a date suffix) -> its price.
    pricing: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICING))

    @model_validator(mode="after")
    def _spend_budgets_need_prices(self) -> PoolConfig:
        spending = [t for t, limits in self.tiers.items() if limits.monthly_spend_budget_usd]
        if spending and not self.pricing:
            raise ValueError(
                f"pricing is empty but tier {spending[0]!r} sets monthlySpendBudgetUsd: add the price of "
                "each model you use under pricing, e.g. \"pricing\": {\"claude-sonnet-5-5\": "
                "{\"inputUsdPerMtok\": 2, \"outputUsdPerMtok\": 10}}"
            )
        return self

    def price_for(self, model: str) -> ModelPrice | None:
        """The price of ``model``: its own entry, else the longest entry it starts with followed by
        ``-`` (a dated snapshot of a priced model); None when unpriced."""
        found = self.pricing.get(model)
        if found is not None:
            return found
        prefixes = [name for name in self.pricing if model.startswith(name + "-")]
        return self.pricing[max(prefixes, key=len)] if prefixes else None

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
