"""Every row of DESIGN.md 4.4's table, from real ``anthropic`` 2.x exception instances."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import anthropic
import httpx2
import pytest

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
from claude_pool.pool.classify import (
    SUCCESS,
    BreakerEffect,
    ErrorPolicy,
    Outcome,
    OutcomeKind,
    Retry,
    classify,
    next_spend_reset,
)

URL = "https://api.anthropic.com/v1/messages"
NOW = datetime(2026, 3, 15, 12, 0, 0, tzinfo=UTC).timestamp()
ACCOUNT = "acct_1"
KEY = "sk-ant-api03-" + "Zq9" * 12 + "-Ab12"


@pytest.fixture
def policy() -> ErrorPolicy:
    return ErrorPolicy(clock=lambda: NOW)


def request() -> httpx2.Request:
    return httpx2.Request("POST", URL)


def body(error_type: str, message: str = "upstream says no", code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code is not None:
        error["details"] = {"error_code": code}
    return {"type": "error", "error": error, "request_id": "req_body"}


def status_error(
    cls: type[anthropic.APIStatusError], status: int, payload: object, headers: dict[str, str] | None = None
) -> anthropic.APIStatusError:
    response = httpx2.Response(status, headers={"request-id": "req_123", **(headers or {})}, request=request())
    return cls(f"Error code: {status} - {payload}", response=response, body=payload)


def check(
    outcome: Outcome,
    kind: OutcomeKind,
    breaker: BreakerEffect,
    retry: Retry,
    error_class: type[UpstreamError] | None,
    *,
    account_status: str | None = None,
) -> None:
    assert outcome.kind is kind
    assert outcome.breaker is breaker
    assert outcome.retry is retry
    assert outcome.account_status == account_status
    if error_class is None:
        assert outcome.error is None
    else:
        assert type(outcome.error) is error_class
        assert outcome.error.account_id == ACCOUNT


def test_success() -> None:
    assert classify(None, account_id=ACCOUNT) is SUCCESS
    check(SUCCESS, OutcomeKind.SUCCESS, BreakerEffect.SUCCESS, Retry.NO, None)
    assert SUCCESS.cooldown_until is None and SUCCESS.status_until is None and SUCCESS.backoff_seconds is None


# (exception class, status, error type) of the table's rows, by what they mean for the account
STATUS_ROW = ("cls", "status", "error_type")
CALLER_ERRORS = [
    (anthropic.BadRequestError, 400, "invalid_request_error"),
    (anthropic.NotFoundError, 404, "not_found_error"),
    (anthropic.ContentTooLargeError, 413, "request_too_large"),
    (anthropic.UnprocessableEntityError, 422, "invalid_request_error"),
]
SERVER_FAILURES = [
    (anthropic.InternalServerError, 500, "api_error"),
    (anthropic.InternalServerError, 502, "api_error"),
    (anthropic.ServiceUnavailableError, 503, "api_error"),
    (anthropic.GatewayTimeoutError, 504, "timeout_error"),
    (anthropic.RequestTimeoutError, 408, "timeout_error"),
]


@pytest.mark.parametrize(STATUS_ROW, CALLER_ERRORS)
def test_caller_errors_are_not_counted_and_not_retried(
    policy: ErrorPolicy, cls: type[anthropic.APIStatusError], status: int, error_type: str
) -> None:
    exc = status_error(cls, status, body(error_type, "messages: field required"))
    outcome = policy.classify(exc, account_id=ACCOUNT)
    check(outcome, OutcomeKind.CALLER_ERROR, BreakerEffect.NOT_COUNTED, Retry.NO, CallerRequestError)
    error = outcome.error
    assert error is not None
    assert error.status_code == status
    assert error.error_type == error_type
    assert error.request_id == "req_123"
    assert error.retry_after is None
    assert error.headers["request-id"] == "req_123"
    assert error.__cause__ is exc
    assert "messages: field required" in str(error) and str(status) in str(error)


@pytest.mark.parametrize(
    ("cls", "status", "error_type"),
    [
        (anthropic.AuthenticationError, 401, "authentication_error"),
        (anthropic.PermissionDeniedError, 403, "permission_error"),
    ],
)
def test_rejected_credentials_mark_the_account_and_fail_over(
    policy: ErrorPolicy, cls: type[anthropic.APIStatusError], status: int, error_type: str
) -> None:
    outcome = policy.classify(status_error(cls, status, body(error_type)), account_id=ACCOUNT)
    check(
        outcome, OutcomeKind.BAD_CREDENTIALS, BreakerEffect.NOT_COUNTED, Retry.OTHER_ACCOUNT,
        CredentialsRejected, account_status="invalid_credentials",
    )
    assert outcome.error is not None and outcome.error.status_code == status


def test_organization_on_hold_is_bad_credentials_although_a_400(policy: ErrorPolicy) -> None:
    exc = status_error(
        anthropic.OrganizationOnHoldError, 400, body("invalid_request_error", code="organization_on_hold")
    )
    outcome = policy.classify(exc, account_id=ACCOUNT)
    assert outcome.kind is OutcomeKind.BAD_CREDENTIALS


SPEND_CASES = [
    (anthropic.PaymentRequiredError, 402, body("billing_error", "credit balance too low")),
    (
        anthropic.EnforcedSpendLimitReachedError,
        429,
        body("rate_limit_error", "monthly spend limit reached", code="enforced_spend_limit_reached"),
    ),
    # The code decides even when the client did not pick the specific class.
    (anthropic.RateLimitError, 429, body("rate_limit_error", code="enforced_spend_limit_reached")),
]


@pytest.mark.parametrize(("cls", "status", "payload"), SPEND_CASES)
def test_spend_exhausted_until_the_first_of_next_month(
    policy: ErrorPolicy, cls: type[anthropic.APIStatusError], status: int, payload: dict[str, Any]
) -> None:
    outcome = policy.classify(status_error(cls, status, payload), account_id=ACCOUNT)
    check(
        outcome, OutcomeKind.SPEND_EXHAUSTED, BreakerEffect.NOT_COUNTED, Retry.OTHER_ACCOUNT, SpendExhausted,
        account_status="spend_exhausted",
    )
    assert outcome.status_until == datetime(2026, 4, 1, tzinfo=UTC)
    assert outcome.cooldown_until is None


def test_spend_reset_rolls_over_the_year() -> None:
    assert next_spend_reset(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert next_spend_reset(datetime(2026, 1, 1, 0, 0, tzinfo=UTC)) == datetime(2026, 2, 1, tzinfo=UTC)


def test_rate_limited_cools_down_until_retry_after(policy: ErrorPolicy) -> None:
    exc = status_error(anthropic.RateLimitError, 429, body("rate_limit_error"), {"retry-after": "7"})
    outcome = policy.classify(exc, account_id=ACCOUNT)
    check(outcome, OutcomeKind.RATE_LIMITED, BreakerEffect.NOT_COUNTED, Retry.OTHER_ACCOUNT, RateLimited)
    assert outcome.cooldown_until == NOW + 7
    assert outcome.error is not None and outcome.error.retry_after == 7.0
    assert outcome.status_until is None and outcome.backoff_seconds is None


def test_ramp_limit_is_rate_limited(policy: ErrorPolicy) -> None:
    exc = status_error(
        anthropic.RampLimitExceededError, 429, body("rate_limit_error", code="ramp_limit_exceeded"),
        {"retry-after": "2"},
    )
    outcome = policy.classify(exc, account_id=ACCOUNT)
    check(outcome, OutcomeKind.RATE_LIMITED, BreakerEffect.NOT_COUNTED, Retry.OTHER_ACCOUNT, RateLimited)
    assert outcome.cooldown_until == NOW + 2


def test_retry_after_ms_is_preferred(policy: ErrorPolicy) -> None:
    headers = {"retry-after": "3", "retry-after-ms": "1500"}
    exc = status_error(anthropic.RateLimitError, 429, body("rate_limit_error"), headers)
    assert policy.classify(exc, account_id=ACCOUNT).cooldown_until == NOW + 1.5


def _rfc3339(offset: float) -> str:
    return datetime.fromtimestamp(NOW + offset, UTC).isoformat().replace("+00:00", "Z")


def test_without_retry_after_the_exhausted_buckets_reset_decides(policy: ErrorPolicy) -> None:
    headers = {
        "anthropic-ratelimit-requests-remaining": "12",
        "anthropic-ratelimit-requests-reset": _rfc3339(2),
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": _rfc3339(9),
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": _rfc3339(14),
    }
    exc = status_error(anthropic.RateLimitError, 429, body("rate_limit_error"), headers)
    assert policy.classify(exc, account_id=ACCOUNT).cooldown_until == pytest.approx(NOW + 14)


def test_without_retry_after_or_exhausted_bucket_the_earliest_reset(policy: ErrorPolicy) -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": _rfc3339(5),
        "anthropic-ratelimit-tokens-reset": _rfc3339(30),
    }
    exc = status_error(anthropic.RateLimitError, 429, body("rate_limit_error"), headers)
    assert policy.classify(exc, account_id=ACCOUNT).cooldown_until == pytest.approx(NOW + 5)


def test_without_any_hint_one_second(policy: ErrorPolicy) -> None:
    exc = status_error(anthropic.RateLimitError, 429, body("rate_limit_error"))
    outcome = policy.classify(exc, account_id=ACCOUNT)
    assert outcome.cooldown_until == NOW + 1.0
    assert outcome.error is not None and outcome.error.retry_after is None


def test_overloaded_backs_off_and_retries_anywhere(policy: ErrorPolicy) -> None:
    exc = status_error(anthropic.OverloadedError, 529, body("overloaded_error", "Overloaded"))
    outcome = policy.classify(exc, account_id=ACCOUNT)
    check(
        outcome, OutcomeKind.OVERLOADED, BreakerEffect.NOT_COUNTED, Retry.ANY_ACCOUNT_AFTER_BACKOFF, Overloaded
    )
    assert outcome.backoff_seconds == 1.0
    assert policy.classify(exc, account_id=ACCOUNT, attempt=3).backoff_seconds == 4.0
    assert policy.classify(exc, account_id=ACCOUNT, attempt=30).backoff_seconds == 30.0
    with_hint = status_error(anthropic.OverloadedError, 529, body("overloaded_error"), {"retry-after": "5"})
    assert policy.classify(with_hint, account_id=ACCOUNT).backoff_seconds == 5.0


def test_overloaded_error_event_after_a_200_is_overloaded(policy: ErrorPolicy) -> None:
    # What the client raises for an ``event: error`` in a stream: APIStatusError, status 200.
    exc = status_error(anthropic.APIStatusError, 200, body("overloaded_error", "Overloaded"))
    assert exc.status_code == 200
    outcome = policy.classify(exc, account_id=ACCOUNT)
    check(
        outcome, OutcomeKind.OVERLOADED, BreakerEffect.NOT_COUNTED, Retry.ANY_ACCOUNT_AFTER_BACKOFF, Overloaded
    )
    assert outcome.error is not None and outcome.error.error_type == "overloaded_error"


def test_api_error_event_after_a_200_is_a_failure(policy: ErrorPolicy) -> None:
    exc = status_error(anthropic.APIStatusError, 200, body("api_error", "Internal server error"))
    assert policy.classify(exc, account_id=ACCOUNT).kind is OutcomeKind.FAILURE


@pytest.mark.parametrize(STATUS_ROW, SERVER_FAILURES)
def test_server_failures_count_against_the_account(
    policy: ErrorPolicy, cls: type[anthropic.APIStatusError], status: int, error_type: str
) -> None:
    outcome = policy.classify(status_error(cls, status, body(error_type)), account_id=ACCOUNT)
    check(outcome, OutcomeKind.FAILURE, BreakerEffect.FAILURE, Retry.OTHER_ACCOUNT, UpstreamFailure)
    assert outcome.error is not None and outcome.error.status_code == status


def test_non_json_5xx_body_is_a_failure(policy: ErrorPolicy) -> None:
    exc = status_error(anthropic.InternalServerError, 502, "<html>Bad Gateway</html>")
    outcome = policy.classify(exc, account_id=ACCOUNT)
    assert outcome.kind is OutcomeKind.FAILURE
    assert outcome.error is not None and outcome.error.error_type is None


@pytest.mark.parametrize(
    ("exc", "error_type"),
    [
        (anthropic.APITimeoutError(request=request()), "timeout"),
        (anthropic.APIConnectionError(request=request()), "connection_error"),
        (httpx2.ReadError("peer reset while streaming"), "connection_error"),
        (httpx2.ReadTimeout("stream stalled"), "timeout"),
    ],
)
def test_timeouts_and_connection_errors_are_failures(
    policy: ErrorPolicy, exc: BaseException, error_type: str
) -> None:
    outcome = policy.classify(exc, account_id=ACCOUNT)
    check(outcome, OutcomeKind.FAILURE, BreakerEffect.FAILURE, Retry.OTHER_ACCOUNT, UpstreamFailure)
    assert outcome.error is not None
    assert outcome.error.status_code is None
    assert outcome.error.error_type == error_type
    assert outcome.error.__cause__ is exc


@pytest.mark.parametrize(
    "exc", [asyncio.CancelledError(), DeadlineExceeded("caller deadline passed"), TimeoutError()]
)
def test_our_callers_deadline_or_cancellation_stops_uncounted(policy: ErrorPolicy, exc: BaseException) -> None:
    outcome = policy.classify(exc, account_id=ACCOUNT)
    check(outcome, OutcomeKind.CANCELLED, BreakerEffect.NOT_COUNTED, Retry.NO, None)


def test_anthropics_504_alias_named_deadline_is_not_our_deadline(policy: ErrorPolicy) -> None:
    exc = status_error(anthropic.DeadlineExceededError, 504, body("timeout_error"))
    assert policy.classify(exc, account_id=ACCOUNT).kind is OutcomeKind.FAILURE


def test_a_local_bug_is_never_charged_to_the_account(policy: ErrorPolicy) -> None:
    outcome = policy.classify(ValueError("our bug"), account_id=ACCOUNT)
    check(outcome, OutcomeKind.FAILURE, BreakerEffect.NOT_COUNTED, Retry.NO, None)


def test_messages_never_carry_a_key(policy: ErrorPolicy) -> None:
    payload = body("authentication_error", f"invalid x-api-key {KEY}")
    exc = status_error(anthropic.AuthenticationError, 401, payload, {"x-echo": KEY})
    outcome = policy.classify(exc, account_id=ACCOUNT)
    assert KEY in str(exc)  # the client's own message embeds the body: that is why we rebuild it
    error = outcome.error
    assert error is not None
    assert KEY not in str(error) and KEY not in repr(error.args)
    assert "sk-ant-…Ab12" in str(error)
    assert KEY not in " ".join(error.headers.values())


def test_long_upstream_messages_are_truncated(policy: ErrorPolicy) -> None:
    exc = status_error(anthropic.BadRequestError, 400, body("invalid_request_error", "x" * 5000))
    outcome = policy.classify(exc, account_id=ACCOUNT)
    assert outcome.error is not None and len(str(outcome.error)) < 700


@pytest.mark.parametrize(
    ("cls", "status", "payload", "headers"),
    [
        (anthropic.BadRequestError, 400, body("invalid_request_error"), {}),
        (anthropic.AuthenticationError, 401, body("authentication_error"), {}),
        (anthropic.PaymentRequiredError, 402, body("billing_error"), {}),
        (anthropic.RateLimitError, 429, body("rate_limit_error"), {"retry-after": "4"}),
        (anthropic.OverloadedError, 529, body("overloaded_error"), {}),
        (anthropic.InternalServerError, 500, body("api_error"), {}),
    ],
)
def test_classifying_our_own_error_again_gives_the_same_outcome(
    policy: ErrorPolicy, cls: type[anthropic.APIStatusError], status: int, payload: object,
    headers: dict[str, str],
) -> None:
    first = policy.classify(status_error(cls, status, payload, headers), account_id=ACCOUNT)
    assert first.error is not None
    again = policy.classify(first.error, account_id=ACCOUNT)
    assert (again.kind, again.breaker, again.retry, again.account_status) == (
        first.kind, first.breaker, first.retry, first.account_status,
    )
    assert again.cooldown_until == first.cooldown_until
    assert type(again.error) is type(first.error)
