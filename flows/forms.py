"""The values a person fills in on a deployment's form in the Prefect UI: typed so that the UI
renders a choice where there is one and a described field where there is not."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from claude_pool.pool.models import DelegationRequest

__all__ = ["DEFAULT_MODEL", "ChatMessage", "Role", "plain_messages"]

#: The model a request names when it names none.
DEFAULT_MODEL: str = DelegationRequest.model_fields["model"].default


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class ChatMessage(BaseModel):
    """One turn of the conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Role = Field(default=Role.USER, description="Who speaks: the user, or Claude's earlier answer.")
    content: str = Field(min_length=1, description="What is said, as plain text.")


def plain_messages(messages: list[ChatMessage] | list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The messages as the library takes them (plain dicts); None when there are none."""
    if not messages:
        return None
    return [m.model_dump(mode="json") if isinstance(m, BaseModel) else dict(m) for m in messages]
