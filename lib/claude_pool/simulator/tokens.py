"""Deterministic token arithmetic shared by the simulator and, as an estimator, by the pool.

The real tokenizer is not public; what matters for pooling is that the simulator and the pool agree
on one cheap, documented rule, so a test can predict exactly what a request costs.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "BASE_INPUT_TOKENS",
    "CHARS_PER_TOKEN",
    "count_input_tokens",
    "output_text",
    "output_tokens_for",
]

#: Fixed overhead charged to every request (role markers and the like on the real service).
BASE_INPUT_TOKENS = 8
#: English text averages close to four characters per token on Claude models.
CHARS_PER_TOKEN = 4

# 80 characters, a multiple of CHARS_PER_TOKEN, so a slice of 4*n characters is exactly n tokens when
# fed back as input. Built once: slicing a long string is far cheaper than generating text per request.
_PHRASE = "the quick brown fox jumps over the lazy dog while the simulator counts tokens ok "
_FILLER = _PHRASE * (4 * 131_072 // len(_PHRASE) + 1)


def _text_len(value: Any) -> int:
    """UTF-8 byte length of every text found in a content value (string or list of blocks)."""
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


def count_input_tokens(body: Mapping[str, Any]) -> int:
    """Input tokens of a Messages request: ``8 + ceil(utf8_bytes(all text in system + messages) / 4)``.

    "All text" is the ``system`` string or its text blocks, and every message's string content or the
    ``text`` of its blocks (tool_result content included, tool_use input as its string form).
    Images, tools and metadata cost nothing here. The pool may call this as its estimator: on the
    simulator it is exact.
    """
    size = _text_len(body.get("system"))
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping):
                size += _text_len(message.get("content"))
    return BASE_INPUT_TOKENS + -(-size // CHARS_PER_TOKEN)


def output_tokens_for(
    raw_body: bytes,
    max_tokens: int,
    *,
    seed: int,
    mode: Literal["random", "fraction", "fixed"],
    fraction: float = 0.5,
    tokens: int = 16,
) -> int:
    """How many tokens the simulated model answers, always within ``[1, max_tokens]``.

    ``random`` derives the length from the seed and the request bytes, so the same request in the same
    scenario always gets the same answer, whatever order requests arrive in.
    """
    if max_tokens <= 1:
        return 1
    if mode == "fraction":
        n = -(-int(max_tokens * fraction * 1000) // 1000)
    elif mode == "fixed":
        n = tokens
    else:
        # Knuth's multiplicative hash spreads nearby CRCs over the whole range.
        mixed = ((zlib.crc32(raw_body) ^ (seed & 0xFFFFFFFF)) * 2654435761) & 0xFFFFFFFF
        n = 1 + mixed % max_tokens
    return max(1, min(max_tokens, n))


def output_text(n_tokens: int) -> str:
    """Text of exactly ``n_tokens`` tokens by :func:`count_input_tokens`'s rule (4 ASCII chars each)."""
    return _FILLER[: CHARS_PER_TOKEN * min(n_tokens, len(_FILLER) // CHARS_PER_TOKEN)]
