"""How many input tokens a request will cost, known before it is sent.

The real tokenizer is not public. The rule here (``8 + ceil(utf8 bytes of all text / 4)``) is the
one the local simulator charges, so tests can predict costs exactly; against the real API it is an
estimate that settlement corrects from the response's ``usage`` (and ``count_tokens`` can replace it
where exactness matters more than a round trip).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["BASE_INPUT_TOKENS", "CHARS_PER_TOKEN", "estimate_input_tokens"]

BASE_INPUT_TOKENS = 8
CHARS_PER_TOKEN = 4


def _text_len(value: Any) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8"))
    if not isinstance(value, list):
        return 0
    total = 0
    for block in value:
        if isinstance(block, str):
            total += _text_len(block)
        elif isinstance(block, Mapping):
            # text blocks carry "text"; tool_result blocks nest their own "content".
            total += _text_len(block.get("text"))
            total += _text_len(block.get("content"))
            if block.get("type") == "tool_use":
                total += len(str(block.get("input", "")))
    return total


def estimate_input_tokens(body: Mapping[str, Any]) -> int:
    """Input tokens of a Messages API body: system text plus every message's text."""
    size = _text_len(body.get("system"))
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping):
                size += _text_len(message.get("content"))
    return BASE_INPUT_TOKENS + -(-size // CHARS_PER_TOKEN)
