"""The HTTP API's bodies: camelCase JSON as the original system spoke it, snake_case inside.

Every member of every response and event a client sees is camelCase, nested ones included (the
attempts of an execution, an account's limit overrides, an event's payload: :func:`camel_keys`).
Request models only check shapes and bounds the database can hold; the domain rules (key format,
tiers, names) stay in the library, which names the field it refuses. A member a body does not
know is refused with the names it does know (``rpm`` -> "did you mean requestsPerMinute?").
"""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from claude_pool.core.config import Strategy
from claude_pool.records.view import ExecutionView

__all__ = [
    "UNKNOWN_FIELD",
    "AccountCreateBody",
    "AccountOut",
    "AccountUpdateBody",
    "AttemptDetailOut",
    "BreakerOut",
    "CapacityOut",
    "ErrorBody",
    "ErrorDetail",
    "ExecuteBody",
    "ExecutionOut",
    "LimitsOut",
    "MessageIn",
    "QuotaAlertOut",
    "RotateKeyBody",
    "UsageOut",
    "accepted_fields",
    "camel",
    "camel_keys",
]

# Bounds the database columns hold (BIGINT, and what SQLite accepts), so that an absurd number is a
# 422 naming its field rather than a storage error.
_BIG = 2**53


#: The validation error type of a body member no field of its model takes (see ``http/errors.py``).
UNKNOWN_FIELD = "unknown_field"


def camel(field: str) -> str:
    """``organization_id`` -> ``organizationId``: how a library field is named to HTTP callers."""
    return ".".join(to_camel(part) for part in field.split("."))


def camel_keys(value: Any) -> Any:
    """``value`` with every mapping key in camelCase, at every depth: a payload the library built
    with its own (snake_case) names, as the API shows it."""
    if isinstance(value, dict):
        return {camel(str(k)) if isinstance(k, str) else k: camel_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [camel_keys(v) for v in value]
    return value


def _initials(alias: str) -> str:
    """``requestsPerMinute`` -> ``rpm``: the abbreviation people type for a field."""
    return (alias[0] + "".join(c for c in alias[1:] if c.isupper())).lower()


def _suggestion(name: str, accepted: list[str]) -> str | None:
    folded = name.replace("_", "").replace("-", "").lower()
    for alias in accepted:
        if folded in (alias.lower(), _initials(alias)):
            return alias
    close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.6)
    return close[0] if close else None


def accepted_fields(model: type[BaseModel]) -> list[str]:
    """The members a body model takes, as clients write them: required ones first."""
    fields = list(model.model_fields.items())
    ordered = [f for f in fields if f[1].is_required()] + [f for f in fields if not f[1].is_required()]
    return [info.alias or name for name, info in ordered]


def _find_unencodable(value: Any, path: str = "") -> str | None:
    """The path of the first string that cannot be stored (a lone surrogate, a NUL), if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find_unencodable(key, path) or _find_unencodable(item, f"{path}.{key}".lstrip("."))
            if found:
                return found
    if isinstance(value, list):
        for n, item in enumerate(value):
            found = _find_unencodable(item, f"{path}.{n}".lstrip("."))
            if found:
                return found
    return None


def _no_control(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


PlainText = Annotated[str, AfterValidator(_no_control)]


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        # PostgreSQL refuses NUL and every driver refuses lone surrogates: say so up front.
        found = _find_unencodable(data)
        if found is not None:
            raise ValueError(f"{found}: text must be valid UTF-8 without NUL characters")
        return data

    @model_validator(mode="before")
    @classmethod
    def _known_members(cls, data: Any) -> Any:
        # ``extra="forbid"`` alone answers "unknown field" and leaves the caller to find the right
        # name in /openapi.json: name the accepted ones, and the likely one first.
        if not isinstance(data, dict):
            return data
        known = {name for name in cls.model_fields} | {f.alias for f in cls.model_fields.values() if f.alias}
        for key in data:
            if isinstance(key, str) and key not in known:
                accepted = accepted_fields(cls)
                guess = _suggestion(key, accepted)
                raise PydanticCustomError(
                    UNKNOWN_FIELD,
                    "unknown field{hint}; the accepted fields are {accepted}",
                    {
                        "field": key,
                        "hint": f" (did you mean {guess}?)" if guess else "",
                        "accepted": ", ".join(accepted),
                    },
                )
        return data


class _LimitsBody(_Body):
    requests_per_minute: int | None = Field(default=None, gt=0, le=10_000_000)
    input_tokens_per_minute: int | None = Field(default=None, gt=0, le=10_000_000_000)
    output_tokens_per_minute: int | None = Field(default=None, gt=0, le=10_000_000_000)
    daily_token_budget: int | None = Field(default=None, gt=0, le=_BIG)
    monthly_token_budget: int | None = Field(default=None, gt=0, le=_BIG)
    monthly_spend_budget_usd: float | None = Field(default=None, gt=0, le=1e12, allow_inf_nan=False)
    max_in_flight: int | None = Field(default=None, gt=0, le=100_000)
    capacity_group: str | None = Field(default=None, max_length=64)


class AccountCreateBody(_LimitsBody):
    organization_id: str = Field(max_length=64)
    name: str = Field(max_length=100)
    api_key: str = Field(max_length=400, repr=False)
    tier: str = Field(max_length=32)
    priority: int | None = Field(default=None, ge=0, le=1_000_000)
    weight: int | None = Field(default=None, ge=1, le=1_000_000)


class AccountUpdateBody(_LimitsBody):
    """Only the fields given change; ``null`` clears a limit override or the capacity group."""

    name: str | None = Field(default=None, max_length=100)
    tier: str | None = Field(default=None, max_length=32)
    priority: int | None = Field(default=None, ge=0, le=1_000_000)
    weight: int | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _required_not_null(self) -> AccountUpdateBody:
        # These columns always hold a value: null cannot mean "clear" for them.
        for field in ("name", "tier", "priority", "weight"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{camel(field)} cannot be null; leave it out to keep it")
        return self


class RotateKeyBody(_Body):
    api_key: str = Field(max_length=400, repr=False)


class MessageIn(_Body):
    role: str = Field(max_length=16)
    content: str | list[dict[str, Any]]


class ExecuteBody(_Body):
    organization_id: str = Field(max_length=64)
    user_id: PlainText | None = Field(default=None, max_length=200)
    message: str | None = None
    messages: list[MessageIn] | None = None
    model: PlainText | None = Field(default=None, max_length=100)
    max_tokens: int | None = Field(default=None, ge=1, le=128_000)
    system: str | None = None
    strategy: Strategy | None = None
    wait: bool = True
    idempotency_key: PlainText | None = Field(default=None, min_length=1, max_length=200)
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600, allow_inf_nan=False)
    max_queue_seconds: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="the longest this request may wait for its place (0: served at once or refused "
        "with 429 and Retry-After); default: the pool's adaptive bound",
    )


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class LimitsOut(_Out):
    requests_per_minute: int
    input_tokens_per_minute: int
    output_tokens_per_minute: int
    daily_token_budget: int | None = None
    monthly_token_budget: int | None = None
    monthly_spend_budget_usd: float | None = None
    max_in_flight: int | None = None


class BreakerOut(_Out):
    state: str
    consecutive_failures: int
    open_until: datetime | None
    trips: int


class CapacityOut(_Out):
    bucket_id: str
    headroom: float
    requests_remaining: float
    input_tokens_remaining: float
    output_tokens_remaining: float
    in_flight: int
    cooling_down_until: datetime | None
    # False until upstream's headers have calibrated the bucket (capacity.coldStart empty): the
    # levels are then the pool's safe guess, not a measure of use.
    levels_known: bool = True


class AccountOut(_Out):
    """An account as the API shows it: the key only as its hint, with live breaker and headroom."""

    id: str
    organization_id: str
    name: str
    api_key_hint: str
    tier: str
    status: str
    status_reason: str | None
    status_until: datetime | None
    priority: int
    weight: int
    capacity_group: str | None
    limits: LimitsOut
    limit_overrides: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    key_rotated_at: datetime | None
    breaker: BreakerOut | None = None
    capacity: CapacityOut | None = None

    @field_validator("limit_overrides")
    @classmethod
    def _camel_overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The library names the overridden limits as its fields (requests_per_minute): show them
        # as the registration body names them.
        return dict(camel_keys(value))


class QuotaAlertOut(_Out):
    id: int
    account_id: str
    organization_id: str
    metric: str
    threshold: float
    kind: str
    window: str
    observed: float
    limit: float
    fraction: float
    created_at: datetime
    sent_at: datetime | None
    send_attempts: int
    last_error: str | None
    slack_channel: str | None


class UsageOut(_Out):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class AttemptDetailOut(_Out):
    """One call of an execution to Anthropic, as the execution's ``attemptDetails`` list it."""

    account_id: str | None = None
    outcome: str | None = None
    status_code: int | None = None
    error_type: str | None = None
    request_id: str | None = None
    latency_ms: float | None = None


class ErrorDetail(_Out):
    type: str
    message: str
    field: str | None = None
    reasons: list[dict[str, Any]] | None = None
    execution_id: str | None = None


class ErrorBody(_Out):
    error: ErrorDetail


class ExecutionOut(_Out):
    execution_id: str
    organization_id: str
    user_id: str | None
    idempotency_key: str | None
    status: str
    model: str
    text: str | None
    stop_reason: str | None
    account_id: str | None
    account_name: str | None
    usage: UsageOut
    attempts: int
    attempt_details: list[AttemptDetailOut]
    latency_ms: float | None
    upstream_request_id: str | None
    error: ErrorDetail | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, execution: ExecutionView) -> ExecutionOut:
        """The response for an execution: the library's one view of it, in the API's shape."""
        error = None
        if execution.error_type is not None:
            error = ErrorDetail(type=execution.error_type, message=execution.error_message or "")
        return cls(
            execution_id=execution.execution_id or "",
            organization_id=execution.organization_id,
            user_id=execution.user_id,
            idempotency_key=execution.idempotency_key,
            status=execution.status,
            model=execution.model,
            text=execution.text,
            stop_reason=execution.stop_reason,
            account_id=execution.account_id,
            account_name=execution.account_name,
            usage=UsageOut(
                input_tokens=execution.input_tokens,
                output_tokens=execution.output_tokens,
                cache_creation_input_tokens=execution.cache_creation_input_tokens,
                cache_read_input_tokens=execution.cache_read_input_tokens,
            ),
            attempts=execution.attempts,
            # Stored as the pool recorded them (snake_case); a member a row lacks is null.
            attempt_details=[AttemptDetailOut.model_validate(d) for d in execution.attempt_details],
            latency_ms=execution.latency_ms,
            upstream_request_id=execution.upstream_request_id,
            error=error,
            created_at=execution.created_at,
            finished_at=execution.finished_at,
        )
