"""The one exception tree of claude-pool.

Every error the library raises is a ``ClaudePoolError``; a dependency's exceptions are mapped
once, at the boundary, with ``raise ... from exc``. No message ever carries a plaintext API key.

    ClaudePoolError
    ├── ConfigError                 config/multi-account.json or an override is invalid
    ├── SettingsError               an environment variable is missing or malformed
    ├── InvalidInput                a caller's value is wrong (names the field and the fix)
    │   └── DuplicateAccount        the same API key is already registered
    ├── NotFound
    │   ├── AccountNotFound
    │   └── ExecutionNotFound       no execution with that id (or not the caller's)
    ├── CryptoError
    │   ├── EncryptionKeyError      ENCRYPTION_KEY missing or not 64 hex characters
    │   └── DecryptionError         wrong key, tampered value, or value moved to another row
    ├── StorageError                the database failed
    ├── BackendUnavailable          Redis or the embedded capacity store failed
    ├── NoAccountAvailable          no account can serve now (carries the reason per account)
    ├── DeadlineExceeded            the caller's own deadline passed
    ├── DelegationFailed            a recorded delegation ended without a result (its execution id)
    ├── UpstreamError               Anthropic answered with an error (account, status, request id)
    │   ├── CallerRequestError      400 / 404 / 413: the request itself is wrong; never retried
    │   ├── CredentialsRejected     401 / 403: the key is bad or revoked
    │   ├── SpendExhausted          402, or 429 enforced_spend_limit_reached
    │   ├── RateLimited             429: the account is busy, not sick
    │   ├── Overloaded              529: Anthropic as a whole is busy
    │   └── UpstreamFailure         5xx, time-out, connection error
    ├── NotificationError           Slack refused or could not be reached
    ├── SubscriberDropped           an event-stream subscriber fell too far behind (claude_pool.events)
    └── ApiError                    the HTTP API's own refusal: auth, scope (claude_pool.http)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "AccountNotFound",
    "AccountUnavailability",
    "BackendUnavailable",
    "CallerRequestError",
    "ClaudePoolError",
    "ConfigError",
    "CredentialsRejected",
    "CryptoError",
    "DeadlineExceeded",
    "DecryptionError",
    "DelegationFailed",
    "DuplicateAccount",
    "EncryptionKeyError",
    "ExecutionNotFound",
    "InvalidInput",
    "NoAccountAvailable",
    "NotFound",
    "NotificationError",
    "Overloaded",
    "RateLimited",
    "SettingsError",
    "SpendExhausted",
    "StorageError",
    "UpstreamError",
    "UpstreamFailure",
]


class ClaudePoolError(Exception):
    """Base of every error claude-pool raises."""


class ConfigError(ClaudePoolError):
    """The operator's config is invalid. ``problems`` holds one line per bad value: its JSON path,
    what it was and what is allowed."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config in {source}:\n{lines}")


class SettingsError(ClaudePoolError):
    """An environment variable is missing or malformed."""

    def __init__(self, variable: str, problem: str, fix: str) -> None:
        self.variable = variable
        self.problem = problem
        self.fix = fix
        super().__init__(f"{variable}: {problem}. Fix: {fix}")


class InvalidInput(ClaudePoolError):
    """A value given by a caller is wrong. Names the field and how to fix it."""

    def __init__(self, field: str, problem: str, fix: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        message = f"{field}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class DuplicateAccount(InvalidInput):
    def __init__(self, existing_account_id: str) -> None:
        self.existing_account_id = existing_account_id
        super().__init__(
            "api_key",
            f"this API key is already registered as account {existing_account_id}",
            "rotate or remove that account instead of registering the key twice",
        )


class NotFound(ClaudePoolError):
    pass


class AccountNotFound(NotFound):
    def __init__(self, reference: str, detail: str = "") -> None:
        self.reference = reference
        super().__init__(f"no account {reference!r}{': ' + detail if detail else ''}")


class ExecutionNotFound(NotFound):
    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"no execution {execution_id!r}")


class CryptoError(ClaudePoolError):
    pass


class EncryptionKeyError(CryptoError):
    pass


class DecryptionError(CryptoError):
    pass


class StorageError(ClaudePoolError):
    pass


class BackendUnavailable(ClaudePoolError):
    """The capacity or breaker backend (Redis, or the embedded store) could not be used."""

    def __init__(self, backend: str, detail: str) -> None:
        self.backend = backend
        super().__init__(f"{backend} unavailable: {detail}")


@dataclass(frozen=True)
class AccountUnavailability:
    """Why one account cannot serve now, and until when (``None`` = not by waiting)."""

    account_id: str
    name: str
    reason: str
    until: datetime | None = None

    def __str__(self) -> str:
        when = f" until {self.until.isoformat(timespec='seconds')}" if self.until else ""
        return f"{self.name} ({self.account_id}): {self.reason}{when}"


class NoAccountAvailable(ClaudePoolError):
    """No account could take the request: ``reasons`` per account, ``retry_after`` in seconds."""

    def __init__(self, reasons: Sequence[AccountUnavailability], *, message: str | None = None) -> None:
        self.reasons = list(reasons)
        waits = [r.until for r in self.reasons if r.until is not None]
        self.earliest_recovery: datetime | None = min(waits) if waits else None
        # Seconds until a retry could be admitted (the HTTP API's Retry-After); None: not by waiting.
        self.retry_after: float | None = (
            None
            if self.earliest_recovery is None
            else max(0.0, self.earliest_recovery.timestamp() - time.time())
        )
        if message is None:
            if not self.reasons:
                message = "no account can serve: the pool has no active account"
            else:
                body = "\n".join(f"  - {r}" for r in self.reasons)
                message = f"no account can serve this request now:\n{body}"
        super().__init__(message)


class DeadlineExceeded(ClaudePoolError):
    pass


class DelegationFailed(ClaudePoolError):
    """A delegation ended without a result; its execution row (``execution_id``) says why. The
    error type and message are the recorded ones: the original exception may have been raised in
    another process (a Prefect task) and only its row is left."""

    def __init__(self, execution_id: str | None, error_type: str | None, message: str | None) -> None:
        self.execution_id = execution_id
        self.error_type = error_type or "Error"
        super().__init__(f"execution {execution_id} failed: {self.error_type}: {message or ''}")


class UpstreamError(ClaudePoolError):
    """Anthropic answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        account_id: str | None = None,
        status_code: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        upstream_message: str | None = None,
    ) -> None:
        self.account_id = account_id
        # Upstream's own words (redacted), without the pool's framing: what a drop-in client reads.
        self.upstream_message = upstream_message
        self.status_code = status_code
        self.error_type = error_type
        self.request_id = request_id
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        super().__init__(message)


class CallerRequestError(UpstreamError):
    pass


class CredentialsRejected(UpstreamError):
    pass


class SpendExhausted(UpstreamError):
    pass


class RateLimited(UpstreamError):
    pass


class Overloaded(UpstreamError):
    pass


class UpstreamFailure(UpstreamError):
    pass


class NotificationError(ClaudePoolError):
    def __init__(self, message: str, *, error: str | None = None, retry_after: float | None = None) -> None:
        self.error = error
        self.retry_after = retry_after
        super().__init__(message)
