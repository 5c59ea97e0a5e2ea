"""What an upstream outcome means for the account, the breaker and the caller (DESIGN.md 4.4).

One policy object decides it, once, at the boundary with the ``anthropic`` client, so that the pool,
the breaker and the retry loop never re-derive it from status codes:

    exception                                   kind              breaker      retry
    ------------------------------------------  ----------------  -----------  -------------------------
    (no exception)                              success           success      no
    400, 404, 413 (and other 4xx)               caller_error      not_counted  no
    401, 403, 400 organization_on_hold          bad_credentials   not_counted  other_account
    402, 429 enforced/contract spend limit      spend_exhausted   not_counted  other_account
    429 rate_limit_error (ramp_limit_exceeded)  rate_limited      not_counted  other_account
    529, or an ``error`` event of type
      overloaded_error after a 200              overloaded        not_counted  any_account_after_backoff
    408, 409, 5xx, time-out, connection error   failure           failure      other_account
    CancelledError, TimeoutError, our
      DeadlineExceeded                          cancelled         not_counted  no

Anything else (a bug of ours, a local credentials problem) is not an upstream outcome: it is
reported as ``failure`` with ``breaker=not_counted``, ``retry=no`` and ``error=None``, and the caller
re-raises the original.

Every ``UpstreamError`` built here has ``__cause__`` set to the client's exception and a message
made of the status, the error type and the upstream message passed through
:func:`claude_pool.core.redaction.redact`: never the client's own message, which embeds the whole body.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

import anthropic
import httpx2

from claude_pool.breaker.model import BreakerEffect
from claude_pool.core.errors import (
    CallerRequestError,
    CredentialsRejected,
    DeadlineExceeded,
    Overloaded,
    RateLimited,
    SpendExhausted,
    UpstreamError,
    UpstreamFailure,
)
from claude_pool.core.redaction import redact

__all__ = [
    "SUCCESS",
    "AccountStatus",
    "BreakerEffect",
    "ErrorPolicy",
    "Outcome",
    "OutcomeKind",
    "Retry",
    "classify",
    "next_spend_reset",
]

AccountStatus = Literal["invalid_credentials", "spend_exhausted"]


class OutcomeKind(StrEnum):
    SUCCESS = "success"
    CALLER_ERROR = "caller_error"
    BAD_CREDENTIALS = "bad_credentials"
    SPEND_EXHAUSTED = "spend_exhausted"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    FAILURE = "failure"
    CANCELLED = "cancelled"


class Retry(StrEnum):
    NO = "no"
    OTHER_ACCOUNT = "other_account"
    ANY_ACCOUNT_AFTER_BACKOFF = "any_account_after_backoff"


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    breaker: BreakerEffect
    retry: Retry
    account_status: AccountStatus | None = None
    # When a spend-exhausted account may be tried again (the monthly cap resets).
    status_until: datetime | None = None
    # Epoch seconds until which a rate-limited account is set aside.
    cooldown_until: float | None = None
    # How long to wait before retrying an overloaded call (on any account).
    backoff_seconds: float | None = None
    error: UpstreamError | None = None


SUCCESS = Outcome(kind=OutcomeKind.SUCCESS, breaker=BreakerEffect.SUCCESS, retry=Retry.NO)


@dataclass(frozen=True)
class _Rule:
    breaker: BreakerEffect
    retry: Retry
    account_status: AccountStatus | None
    error_class: type[UpstreamError]
    label: str


_RULES: Mapping[OutcomeKind, _Rule] = {
    OutcomeKind.CALLER_ERROR: _Rule(
        BreakerEffect.NOT_COUNTED, Retry.NO, None, CallerRequestError, "request rejected"
    ),
    OutcomeKind.BAD_CREDENTIALS: _Rule(
        BreakerEffect.NOT_COUNTED,
        Retry.OTHER_ACCOUNT,
        "invalid_credentials",
        CredentialsRejected,
        "credentials rejected",
    ),
    OutcomeKind.SPEND_EXHAUSTED: _Rule(
        BreakerEffect.NOT_COUNTED,
        Retry.OTHER_ACCOUNT,
        "spend_exhausted",
        SpendExhausted,
        "spend exhausted",
    ),
    OutcomeKind.RATE_LIMITED: _Rule(
        BreakerEffect.NOT_COUNTED, Retry.OTHER_ACCOUNT, None, RateLimited, "rate limited"
    ),
    OutcomeKind.OVERLOADED: _Rule(
        BreakerEffect.NOT_COUNTED, Retry.ANY_ACCOUNT_AFTER_BACKOFF, None, Overloaded, "overloaded"
    ),
    OutcomeKind.FAILURE: _Rule(
        BreakerEffect.FAILURE, Retry.OTHER_ACCOUNT, None, UpstreamFailure, "call failed"
    ),
}

# Our own exceptions map back to their kind, so classifying an already classified error is stable.
_KIND_OF_OURS: Mapping[type[UpstreamError], OutcomeKind] = {
    rule.error_class: kind for kind, rule in _RULES.items()
}

# ``error.details.error_code`` names the cause more precisely than the status: it wins.
_BY_CODE: Mapping[str, OutcomeKind] = {
    "enforced_spend_limit_reached": OutcomeKind.SPEND_EXHAUSTED,
    "contract_spend_limit_reached": OutcomeKind.SPEND_EXHAUSTED,
    "linked_organization_spend_limit_reached": OutcomeKind.SPEND_EXHAUSTED,
    # The organization is disabled: every call on this key will fail until a human acts.
    "organization_on_hold": OutcomeKind.BAD_CREDENTIALS,
}

_BY_STATUS: Mapping[int, OutcomeKind] = {
    400: OutcomeKind.CALLER_ERROR,
    401: OutcomeKind.BAD_CREDENTIALS,
    402: OutcomeKind.SPEND_EXHAUSTED,
    403: OutcomeKind.BAD_CREDENTIALS,
    404: OutcomeKind.CALLER_ERROR,
    # 408 and 409 are transient on Anthropic's side (the client itself retries them).
    408: OutcomeKind.FAILURE,
    409: OutcomeKind.FAILURE,
    413: OutcomeKind.CALLER_ERROR,
    429: OutcomeKind.RATE_LIMITED,
    529: OutcomeKind.OVERLOADED,
}

# Used when the status says nothing, above all for an ``error`` event after a 200.
_BY_TYPE: Mapping[str, OutcomeKind] = {
    "invalid_request_error": OutcomeKind.CALLER_ERROR,
    "not_found_error": OutcomeKind.CALLER_ERROR,
    "request_too_large": OutcomeKind.CALLER_ERROR,
    "authentication_error": OutcomeKind.BAD_CREDENTIALS,
    "permission_error": OutcomeKind.BAD_CREDENTIALS,
    "billing_error": OutcomeKind.SPEND_EXHAUSTED,
    "rate_limit_error": OutcomeKind.RATE_LIMITED,
    "overloaded_error": OutcomeKind.OVERLOADED,
    "api_error": OutcomeKind.FAILURE,
    "timeout_error": OutcomeKind.FAILURE,
}

_MAX_UPSTREAM_MESSAGE = 500


@dataclass(frozen=True)
class _Facts:
    """What an upstream exception says, whatever its class."""

    status_code: int | None
    error_type: str | None
    error_code: str | None
    message: str
    request_id: str | None
    headers: Mapping[str, str] = field(default_factory=dict)


def next_spend_reset(now: datetime) -> datetime:
    """00:00 UTC on the 1st of the month after ``now``: when a monthly spend cap resets."""
    now = now.astimezone(UTC)
    if now.month == 12:
        return datetime(now.year + 1, 1, 1, tzinfo=UTC)
    return datetime(now.year, now.month + 1, 1, tzinfo=UTC)


class ErrorPolicy:
    """Maps what a call ended with to an :class:`Outcome`. Stateless apart from its settings."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        default_cooldown_seconds: float = 1.0,
        max_header_cooldown_seconds: float = 60.0,
        overload_backoff_seconds: float = 1.0,
        max_overload_backoff_seconds: float = 30.0,
    ) -> None:
        self._clock = clock
        self.default_cooldown_seconds = default_cooldown_seconds
        self.max_header_cooldown_seconds = max_header_cooldown_seconds
        self.overload_backoff_seconds = overload_backoff_seconds
        self.max_overload_backoff_seconds = max_overload_backoff_seconds

    def classify(self, exc: BaseException | None, *, account_id: str, attempt: int = 1) -> Outcome:
        """The outcome of a call on ``account_id`` that raised ``exc`` (``None``: it succeeded).

        ``attempt`` (1-based) only scales the back-off of an overloaded call.
        """
        if exc is None:
            return SUCCESS
        if _is_cancellation(exc):
            return Outcome(kind=OutcomeKind.CANCELLED, breaker=BreakerEffect.NOT_COUNTED, retry=Retry.NO)
        found = _facts(exc)
        if found is None:
            return Outcome(kind=OutcomeKind.FAILURE, breaker=BreakerEffect.NOT_COUNTED, retry=Retry.NO)
        kind, facts = found
        return self._outcome(kind, facts, exc, account_id=account_id, attempt=attempt)

    def _outcome(
        self, kind: OutcomeKind, facts: _Facts, cause: BaseException, *, account_id: str, attempt: int
    ) -> Outcome:
        rule = _RULES[kind]
        now = self._clock()
        retry_after = _retry_after(facts.headers, now)
        error = _build_error(rule, facts, account_id=account_id, retry_after=retry_after)
        error.__cause__ = cause
        outcome = Outcome(
            kind=kind,
            breaker=rule.breaker,
            retry=rule.retry,
            account_status=rule.account_status,
            error=error,
        )
        if kind is OutcomeKind.SPEND_EXHAUSTED:
            until = next_spend_reset(datetime.fromtimestamp(now, UTC))
            return replace(outcome, status_until=until)
        if kind is OutcomeKind.RATE_LIMITED:
            wait = retry_after if retry_after is not None else self._cooldown_from_resets(facts.headers, now)
            return replace(outcome, cooldown_until=now + wait)
        if kind is OutcomeKind.OVERLOADED:
            return replace(outcome, backoff_seconds=self._overload_backoff(retry_after, attempt))
        return outcome

    def _cooldown_from_resets(self, headers: Mapping[str, str], now: float) -> float:
        """Without ``retry-after``, guess from the buckets' reset times.

        The buckets that report nothing left must all refill, so wait for the latest of those; if
        none says so, the earliest reset is the first moment anything changes. Capped, because a
        skewed clock should not bench an account for long.
        """
        exhausted: list[float] = []
        every: list[float] = []
        for name, value in headers.items():
            if not (name.startswith("anthropic-ratelimit-") and name.endswith("-reset")):
                continue
            at = _parse_rfc3339(value)
            if at is None:
                continue
            every.append(at)
            remaining = headers.get(name[: -len("reset")] + "remaining")
            if remaining is not None and remaining.strip() == "0":
                exhausted.append(at)
        if exhausted:
            wait = max(exhausted) - now
        elif every:
            wait = min(every) - now
        else:
            return self.default_cooldown_seconds
        return min(max(wait, self.default_cooldown_seconds), self.max_header_cooldown_seconds)

    def _overload_backoff(self, retry_after: float | None, attempt: int) -> float:
        if retry_after is not None:
            return retry_after
        backoff = self.overload_backoff_seconds * float(2 ** max(attempt - 1, 0))
        return min(backoff, self.max_overload_backoff_seconds)


def _is_cancellation(exc: BaseException) -> bool:
    # A bare TimeoutError is ``asyncio.timeout`` around the call, i.e. our caller's deadline; the
    # client's own time-out is APITimeoutError, which is not a TimeoutError.
    return isinstance(
        exc, asyncio.CancelledError | TimeoutError | DeadlineExceeded | KeyboardInterrupt | SystemExit
    )


def _facts(exc: BaseException) -> tuple[OutcomeKind, _Facts] | None:
    if isinstance(exc, anthropic.APIStatusError):
        facts = _Facts(
            status_code=exc.status_code,
            error_type=exc.type,
            error_code=exc.error_code,
            message=exc.api_message or _reason(exc.status_code),
            request_id=exc.request_id,
            headers=_headers(exc.response.headers),
        )
        return _kind(facts), facts
    if isinstance(exc, anthropic.APITimeoutError):
        return OutcomeKind.FAILURE, _Facts(None, "timeout", None, "request timed out", None)
    if isinstance(exc, anthropic.APIConnectionError):
        return OutcomeKind.FAILURE, _Facts(None, "connection_error", None, "connection error", None)
    if isinstance(exc, anthropic.APIResponseValidationError):
        headers = _headers(exc.response.headers)
        facts = _Facts(
            exc.status_code,
            "invalid_response",
            None,
            "response did not match the API schema",
            headers.get("request-id"),
            headers,
        )
        return OutcomeKind.FAILURE, facts
    if isinstance(exc, httpx2.TimeoutException):
        # The client lets transport errors raised while a stream is read escape unwrapped.
        return OutcomeKind.FAILURE, _Facts(None, "timeout", None, "stream read timed out", None)
    if isinstance(exc, httpx2.TransportError):
        return OutcomeKind.FAILURE, _Facts(None, "connection_error", None, type(exc).__name__, None)
    if isinstance(exc, UpstreamError):
        kind = next((k for cls, k in _KIND_OF_OURS.items() if isinstance(exc, cls)), OutcomeKind.FAILURE)
        message = str(exc.args[0]) if exc.args else ""
        return kind, _Facts(exc.status_code, exc.error_type, None, message, exc.request_id, exc.headers)
    return None


def _kind(facts: _Facts) -> OutcomeKind:
    if facts.error_code is not None and facts.error_code in _BY_CODE:
        return _BY_CODE[facts.error_code]
    status = facts.status_code or 0
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if facts.error_type is not None and facts.error_type in _BY_TYPE:
        return _BY_TYPE[facts.error_type]
    if 400 <= status < 500:
        return OutcomeKind.CALLER_ERROR
    return OutcomeKind.FAILURE


def _build_error(rule: _Rule, facts: _Facts, *, account_id: str, retry_after: float | None) -> UpstreamError:
    upstream = redact(facts.message)
    if len(upstream) > _MAX_UPSTREAM_MESSAGE:
        upstream = upstream[:_MAX_UPSTREAM_MESSAGE] + "…"
    what = " ".join(str(p) for p in (facts.status_code, facts.error_type) if p)
    message = f"{rule.label} ({what}): {upstream}" if what else f"{rule.label}: {upstream}"
    if facts.request_id:
        message += f" [request {facts.request_id}]"
    return rule.error_class(
        message,
        account_id=account_id,
        status_code=facts.status_code,
        error_type=facts.error_type,
        request_id=facts.request_id,
        retry_after=retry_after,
        headers=facts.headers,
        upstream_message=upstream,
    )


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): redact(value) for name, value in headers.items()}


def _reason(status: int) -> str:
    return f"HTTP {status}" if status >= 400 else "error event in the stream"


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``retry-after`` in seconds or as an HTTP date."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(float(raw_ms) / 1000.0, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - now, 0.0)


def _parse_rfc3339(value: str) -> float | None:
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    # Anthropic always sends an offset; a bare time is read as UTC, not as this machine's zone.
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


_DEFAULT_POLICY = ErrorPolicy()


def classify(exc: BaseException | None, *, account_id: str, attempt: int = 1) -> Outcome:
    """:meth:`ErrorPolicy.classify` with the default policy."""
    return _DEFAULT_POLICY.classify(exc, account_id=account_id, attempt=attempt)
