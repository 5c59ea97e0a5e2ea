"""Errors in the Messages API's own shape, for the drop-in endpoint (``/v1/...``).

An Anthropic SDK turns a status into its exception class (400 ``BadRequestError``, 401
``AuthenticationError``, 429 ``RateLimitError``, 529 ``OverloadedError``, ...) and reads
``{"type": "error", "error": {"type", "message"}}``; the pool's refusals and failures are told to
such a client in those terms, with ``Retry-After`` where waiting helps (the SDKs honour it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fastapi.responses import JSONResponse

from claude_pool.core.errors import (
    BackendUnavailable,
    CallerRequestError,
    ClaudePoolError,
    CredentialsRejected,
    DeadlineExceeded,
    InvalidInput,
    NoAccountAvailable,
    NotFound,
    Overloaded,
    RateLimited,
    SpendExhausted,
    UpstreamError,
)
from claude_pool.core.redaction import redact
from claude_pool.http.errors import retry_after_header

__all__ = ["ANTHROPIC_PATHS", "anthropic_error", "anthropic_error_event", "gateway_error"]

#: The paths answered in Anthropic's wire format (errors included).
ANTHROPIC_PATHS = ("/v1/",)


def anthropic_error(
    status: int, error_type: str, message: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def gateway_error(exc: Exception, *, execution_id: str | None = None) -> JSONResponse:
    """The answer to a drop-in call that ended with ``exc``: the status and error type the SDKs
    map to the right exception, the pool's own words as the message, the execution id as a
    header (``x-claude-pool-execution-id``) for the records."""
    status, error_type, retry_after = _status_of(exc)
    message = _message_of(exc)
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    if execution_id is not None:
        headers["x-claude-pool-execution-id"] = execution_id
    if isinstance(exc, UpstreamError) and exc.request_id:
        headers["request-id"] = exc.request_id
    return anthropic_error(status, error_type, message, headers=headers)


def anthropic_error_event(exc: Exception) -> bytes:
    """The ``error`` event that ends a stream which failed after its first byte (as upstream ends
    one that it cannot finish): the client sees a failure, never a silent truncation."""

    _, error_type, _ = _status_of(exc)
    message = _message_of(exc)
    data = json.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return f"event: error\ndata: {data}\n\n".encode()


def _message_of(exc: Exception) -> str:
    if isinstance(exc, CallerRequestError) and exc.upstream_message:
        return exc.upstream_message  # the caller's own mistake, in upstream's words as they came
    if isinstance(exc, ClaudePoolError):
        return redact(str(exc))
    return "the call failed unexpectedly; it has been logged"


def _status_of(exc: Exception) -> tuple[int, str, int | None]:
    """(status, Anthropic error type, Retry-After seconds or None) for a library error."""
    if isinstance(exc, NoAccountAvailable):
        if exc.retry_after is not None:
            return 429, "rate_limit_error", retry_after_header(exc.retry_after)
        if not exc.reasons:  # the organization has no account at all: waiting will not help
            return 403, "permission_error", None
        return 529, "overloaded_error", None
    if isinstance(exc, UpstreamError):
        return _upstream_status(exc)
    if isinstance(exc, InvalidInput):
        return 400, "invalid_request_error", None
    if isinstance(exc, NotFound):
        return 404, "not_found_error", None
    if isinstance(exc, DeadlineExceeded):
        return 504, "timeout_error", None
    if isinstance(exc, BackendUnavailable):
        return 503, "api_error", 5
    return 500, "api_error", None


def _upstream_status(exc: UpstreamError) -> tuple[int, str, int | None]:
    retry_after = None if exc.retry_after is None else retry_after_header(exc.retry_after)
    if isinstance(exc, Overloaded):
        return 529, "overloaded_error", retry_after
    if isinstance(exc, RateLimited):
        return 429, "rate_limit_error", retry_after
    if isinstance(exc, CredentialsRejected | SpendExhausted):
        # The pool's keys, not the caller's: an upstream 401 passed on would blame the caller's token.
        return 502, "api_error", None
    if exc.status_code is not None and 400 <= exc.status_code < 500:
        return exc.status_code, exc.error_type or "invalid_request_error", None
    return 502, "api_error", None
