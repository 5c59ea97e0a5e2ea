"""Deterministic token arithmetic shared by the simulator and, as an estimator, by the pool.

The real tokenizer is not public; what matters for pooling is that the simulator and the pool agree
on one cheap, documented rule, so a test can predict exactly what a request costs.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Literal

from claude_pool.pool.token_estimate import BASE_INPUT_TOKENS, CHARS_PER_TOKEN, estimate_input_tokens

__all__ = [
    "BASE_INPUT_TOKENS",
    "CHARS_PER_TOKEN",
    "count_input_tokens",
    "output_text",
    "output_tokens_for",
]

# 80 characters, a multiple of CHARS_PER_TOKEN, so a slice of 4*n characters is exactly n tokens when
# fed back as input. Built once: slicing a long string is far cheaper than generating text per request.
_PHRASE = "the quick brown fox jumps over the lazy dog while the simulator counts tokens ok "
_FILLER = _PHRASE * (4 * 131_072 // len(_PHRASE) + 1)


def count_input_tokens(body: Mapping[str, Any]) -> int:
    """Input tokens the simulator charges for a Messages request: exactly the pool's estimate
    (:func:`claude_pool.pool.token_estimate.estimate_input_tokens`), so tests can predict every cost."""
    return estimate_input_tokens(body)


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
