"""What a caller asks the pool for, and what it gets back: plain, validated, picklable values.

These cross every boundary (Prefect parameters and results, HTTP bodies, the database), so they
hold ids and text, never a key or a client.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from claude_pool.core.config import Strategy

__all__ = ["AttemptRecord", "DelegationRequest", "DelegationResult", "Message", "TokenUsage"]

MAX_MESSAGE_BYTES = 8_000_000

#: The request headers a client's call takes upstream with it (the API version and beta features).
FORWARDED_HEADERS = frozenset({"anthropic-version", "anthropic-beta"})

# What DelegationRequest builds the Messages body from; extra_body holds the rest.
_BODY_FIELDS = frozenset({"model", "max_tokens", "messages", "system", "stream"})


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _not_empty(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        if isinstance(value, list) and not value:
            raise ValueError("must hold at least one content block")
        return value


class DelegationRequest(BaseModel):
    """One call to Claude through the pool.

    ``message`` is a shorthand for ``messages=[{"role": "user", "content": message}]``.
    ``deadline`` is an absolute time (epoch seconds). A request that finds every account busy is
    given its place in the queue of an account when it can be served in time (before its deadline,
    and within the pool's queue bound, see ``AdmissionConfig``), else refused at once with
    ``NoAccountAvailable.retry_after``. ``max_queue_seconds`` sets this request's own bound
    instead of the pool's adaptive one (a batch that would rather wait than be refused).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    organization_id: str = Field(min_length=1, max_length=64)
    messages: tuple[Message, ...] = ()
    message: str | None = Field(default=None, exclude=True)
    model: str = Field(default="claude-sonnet-5-5", min_length=1, max_length=100)
    max_tokens: int = Field(default=1024, ge=1, le=128_000)
    system: str | list[dict[str, Any]] | None = None
    user_id: str | None = Field(default=None, max_length=200)
    strategy: Strategy | None = None
    sticky_key: str | None = Field(default=None, max_length=200)
    deadline: float | None = None
    max_queue_seconds: float | None = Field(default=None, ge=0, le=3600)
    idempotency_key: str | None = Field(default=None, max_length=200)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    stop_sequences: tuple[str, ...] | None = None
    # The drop-in Anthropic endpoint's pass-through: the rest of the client's body (tools,
    # tool_choice, thinking, metadata, fields newer than this code), sent as given; the
    # ``anthropic-version``/``anthropic-beta`` headers it sent; and ``passthrough``, which answers
    # with upstream's message as it came (``DelegationResult.message``) and relays a stream's
    # events as they arrive.
    extra_body: dict[str, Any] = Field(default_factory=dict)
    anthropic_headers: dict[str, str] = Field(default_factory=dict)
    passthrough: bool = False

    @field_validator("extra_body")
    @classmethod
    def _extra_is_extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        named = sorted(_BODY_FIELDS & value.keys())
        if named:
            raise ValueError(f"{', '.join(named)} are fields of the request itself, not of extra_body")
        return value

    @field_validator("anthropic_headers")
    @classmethod
    def _only_anthropic_headers(cls, value: dict[str, str]) -> dict[str, str]:
        other = sorted(name for name in value if name.lower() not in FORWARDED_HEADERS)
        if other:
            raise ValueError(
                f"only {', '.join(sorted(FORWARDED_HEADERS))} are forwarded, not {', '.join(other)}"
            )
        return {name.lower(): text for name, text in value.items()}

    @model_validator(mode="after")
    def _one_form_of_messages(self) -> DelegationRequest:
        if self.message is not None:
            if self.messages:
                raise ValueError("give either message or messages, not both")
            if not self.message.strip():
                raise ValueError("message must not be empty")
            object.__setattr__(self, "messages", (Message(role="user", content=self.message),))
            object.__setattr__(self, "message", None)
        if not self.messages:
            raise ValueError("give message (a string) or messages (a list of {role, content})")
        if self.messages[0].role != "user":
            raise ValueError("messages must start with a user message")
        size = sum(
            len(m.content) if isinstance(m.content, str) else len(str(m.content)) for m in self.messages
        )
        if size > MAX_MESSAGE_BYTES:
            raise ValueError(f"messages hold {size} characters; the limit is {MAX_MESSAGE_BYTES}")
        return self

    def timeout_left(self, now: float | None = None) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - (time.time() if now is None else now)

    def effective_sticky_key(self) -> str | None:
        key = self.sticky_key or self.user_id
        return f"{self.organization_id}:{key}" if key else None

    def anthropic_body(self) -> dict[str, Any]:
        """The Messages API body (model, max_tokens, messages, and the optional fields given)."""
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [m.model_dump() for m in self.messages],
        }
        if self.system is not None:
            body["system"] = self.system
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.stop_sequences:
            body["stop_sequences"] = list(self.stop_sequences)
        if self.user_id:
            body["metadata"] = {"user_id": self.user_id}
        if self.stream and self.passthrough:
            body["stream"] = True
        body.update(self.extra_body)
        return body


class TokenUsage(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @property
    def rate_limited_input(self) -> int:
        """What ITPM counts: input plus cache creation, not cache reads."""
        return self.input_tokens + self.cache_creation_input_tokens


class AttemptRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_id: str
    outcome: str
    status_code: int | None = None
    error_type: str | None = None
    request_id: str | None = None
    latency_ms: float = 0.0


class DelegationResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_id: str
    account_name: str
    model: str
    text: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: TokenUsage
    attempts: list[AttemptRecord]
    latency_ms: float
    upstream_request_id: str | None = None
    message_id: str | None = None
    #: The answer as upstream sent it, for a ``passthrough`` request (the drop-in endpoint).
    message: dict[str, Any] | None = None
