"""Every error the API answers is ``{"error": {"type", "message", "field"?}}`` with the right status.

The library's exception tree maps onto HTTP once, here. Messages pass through :func:`redact`
(an upstream error may quote foreign text), and nothing answers with a traceback: an unexpected
exception is logged and answered as a short, generic 500. A body sent without
``Content-Type: application/json`` is a 415 that says so (FastAPI reads such a body as raw bytes,
and pydantic would complain that bytes are not a dictionary).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from claude_pool.core.errors import (
    BackendUnavailable,
    CallerRequestError,
    ClaudePoolError,
    DeadlineExceeded,
    InvalidInput,
    NoAccountAvailable,
    NotFound,
    StorageError,
    UpstreamError,
)
from claude_pool.core.redaction import redact
from claude_pool.http.schemas import UNKNOWN_FIELD, camel

__all__ = [
    "ApiError",
    "install_error_handlers",
    "library_error_response",
    "retry_after_header",
    "status_for",
]

logger = logging.getLogger("claude_pool.http")

_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
}


class ApiError(ClaudePoolError):
    """An error the API answers, with its status and type: raised by the HTTP layer itself (auth,
    scope), or built to answer one (``ApiError(...).response()``)."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.message = message
        self.field = field
        self.headers = headers
        super().__init__(message)

    def response(self, **extra: Any) -> JSONResponse:
        """The answer: ``extra`` members join the error object, those that are None left out."""
        detail: dict[str, Any] = {"type": self.type, "message": redact(self.message)}
        if self.field is not None:
            detail["field"] = self.field
        detail.update({k: v for k, v in extra.items() if v is not None})
        return JSONResponse({"error": detail}, status_code=self.status, headers=self.headers)


# The status and error type of each branch of the library's tree; the first that matches wins.
_STATUS_OF: tuple[tuple[type[ClaudePoolError], int, str], ...] = (
    (InvalidInput, 422, "invalid_input"),
    (NotFound, 404, "not_found"),
    (NoAccountAvailable, 503, "no_account_available"),
    (UpstreamError, 502, "upstream_error"),
    (BackendUnavailable, 503, "backend_unavailable"),
    (StorageError, 503, "storage_unavailable"),
    (DeadlineExceeded, 504, "deadline_exceeded"),
)


def status_for(exc: ClaudePoolError) -> tuple[int, str]:
    """The HTTP status and error type of a library error."""
    if isinstance(exc, CallerRequestError):
        # The request itself is wrong upstream: the caller gets Anthropic's verdict, not a 502.
        return (exc.status_code if exc.status_code in (400, 404, 413) else 400), "invalid_request"
    for kind, status, type_ in _STATUS_OF:
        if isinstance(exc, kind):
            return status, type_
    return 503, "unavailable"


def library_error_response(exc: ClaudePoolError, *, execution_id: str | None = None) -> JSONResponse:
    status, type_ = status_for(exc)
    field = camel(exc.field) if isinstance(exc, InvalidInput) else None
    message = str(exc)
    reasons = None
    if isinstance(exc, NoAccountAvailable):
        reasons = [
            {
                "accountId": r.account_id,
                "accountName": r.name,
                "reason": redact(r.reason),
                "until": r.until.isoformat() if r.until else None,
            }
            for r in exc.reasons
        ]
    if isinstance(exc, InvalidInput):
        message = f"{field}: {exc.problem}" + (f" ({exc.fix})" if exc.fix else "")
    if status >= 500 and not isinstance(exc, NoAccountAvailable | UpstreamError):
        logger.warning("request failed: %s", exc)
    retry_after = _retry_after(exc, status)
    if isinstance(exc, NoAccountAvailable) and exc.retry_after is not None:
        status = 429  # capacity comes back at a known time: "too many requests now", retry then
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    error = ApiError(status, type_, message, field=field, headers=headers)
    return error.response(reasons=reasons, executionId=execution_id, retryAfterSeconds=retry_after)


def _retry_after(exc: ClaudePoolError, status: int) -> int | None:
    """Whole seconds for the Retry-After header: when an account can take the request again, or a
    short pause for a store that is away; none when waiting cannot help (no account can serve)."""
    if isinstance(exc, NoAccountAvailable):
        return None if exc.retry_after is None else retry_after_header(exc.retry_after)
    return 5 if status == 503 else None


def _validation_field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def retry_after_header(seconds: float) -> int:
    """A wait in whole seconds for ``Retry-After``: rounded up, and at least one (a client told 0
    retries at once, into the same refusal)."""
    return max(1, math.ceil(seconds))


def _is_json(content_type: str | None) -> bool:
    """What FastAPI parses as JSON: ``application/json`` or ``application/<anything>+json``."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    main, _, subtype = media_type.partition("/")
    return main == "application" and (subtype == "json" or subtype.endswith("+json"))


def _not_json(request: Request, errors: list[Any]) -> JSONResponse | None:
    """The 415 for a body the route could not read because it was not declared JSON."""
    content_type = request.headers.get("content-type")
    if _is_json(content_type) or not any(tuple(e.get("loc", ()))[:1] == ("body",) for e in errors):
        return None
    sent = f"Content-Type: {content_type}" if content_type else "no Content-Type header"
    message = (
        f"this route takes a JSON body and the request had {sent}: "
        "send Content-Type: application/json with a JSON object"
    )
    return ApiError(415, "unsupported_media_type", message).response()


async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Never echo ``input``: it may be a key pasted into the wrong field.
    errors = list(exc.errors())
    wrong_media_type = _not_json(request, errors)
    if wrong_media_type is not None:
        return wrong_media_type
    first: dict[str, Any] = (
        errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": "value_error"}
    )
    field = _validation_field(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        msg = "is required"
    elif first.get("type") == "extra_forbidden":
        msg = "unknown field"
    elif first.get("type") == UNKNOWN_FIELD:
        # Raised by the body model itself (schemas._Body), which names the member in ``ctx``.
        member = str((first.get("ctx") or {}).get("field", ""))
        field = member if field == "body" else f"{field}.{member}"
    elif first.get("type") == "json_invalid":
        field, msg = "body", "the body is not valid JSON"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return ApiError(422, "invalid_input", f"{field}: {msg}{more}", field=field).response()


async def _on_api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


async def _on_library_error(_request: Request, exc: ClaudePoolError) -> JSONResponse:
    return library_error_response(exc)


async def _on_http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    type_ = _HTTP_TYPES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else type_
    return ApiError(exc.status_code, type_, message, headers=getattr(exc, "headers", None)).response()


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    logger.error("unexpected error: %s: %s", type(exc).__name__, redact(str(exc)), exc_info=exc)
    return ApiError(500, "internal_error", "an unexpected error occurred; it has been logged").response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClaudePoolError, _on_library_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_unexpected)
