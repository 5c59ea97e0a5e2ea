"""Anthropic's ``anthropic-ratelimit-*`` response headers, parsed into one snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = ["MetricSnapshot", "RateLimitSnapshot"]

_PREFIX = "anthropic-ratelimit-"
_METRICS = {"requests": "requests", "input_tokens": "input-tokens", "output_tokens": "output-tokens"}


@dataclass(frozen=True)
class MetricSnapshot:
    """One metric as upstream reports it; any part may be missing from the response."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None  # epoch seconds when the bucket is full again


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value.strip()))
    except ValueError:
        return None


def _rfc3339(value: str | None) -> float | None:
    if not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"  # fromisoformat takes "Z" only from 3.11 on some forms; be explicit
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class RateLimitSnapshot:
    requests: MetricSnapshot = MetricSnapshot()
    input_tokens: MetricSnapshot = MetricSnapshot()
    output_tokens: MetricSnapshot = MetricSnapshot()

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimitSnapshot:
        """Read the headers (any case); missing or malformed values become None, never an error:
        a proxy may strip some, and calibration is a best effort on top of local accounting."""
        lowered = {k.lower(): v for k, v in headers.items()}
        parts: dict[str, MetricSnapshot] = {}
        for field_name, header in _METRICS.items():
            base = f"{_PREFIX}{header}-"
            parts[field_name] = MetricSnapshot(
                limit=_int(lowered.get(base + "limit")),
                remaining=_int(lowered.get(base + "remaining")),
                reset=_rfc3339(lowered.get(base + "reset")),
            )
        return cls(**parts)

    @property
    def is_empty(self) -> bool:
        return all(
            m.limit is None and m.remaining is None
            for m in (self.requests, self.input_tokens, self.output_tokens)
        )
