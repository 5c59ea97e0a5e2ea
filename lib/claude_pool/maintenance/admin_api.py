"""Anthropic's Admin API, read with ``ANTHROPIC_ADMIN_API_KEY``: the organization's own account of
what each key spent (the usage report), and its keys (which report id is which pooled key).

Both answers cover every client of the organization, this pool's and any other. Each failure (the
admin key refused, the API unreachable, an answer that is not JSON) is one
:class:`~claude_pool.core.errors.UpstreamFailure` whose message says what to check; it never
carries the admin key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from claude_pool.core.errors import SettingsError, UpstreamFailure
from claude_pool.core.settings import Settings

__all__ = ["AdminApi", "ApiKeyInfo", "KeyUsage", "read_usage_report"]

_USAGE_PATH = "/v1/organizations/usage_report/messages"
_KEYS_PATH = "/v1/organizations/api_keys"
_PAGES_AT_MOST = 100  # a report of a day in minutes is 1,440 buckets: two pages; more is a loop


@dataclass(frozen=True)
class KeyUsage:
    """Tokens one key spent in a window, as upstream counts them (input = uncached input + cache
    creation, the tokens an input-per-minute limit counts; cache reads apart)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_input_tokens

    def __add__(self, other: KeyUsage) -> KeyUsage:
        return KeyUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


@dataclass(frozen=True)
class ApiKeyInfo:
    """A key of the organization as the Admin API lists it (never the key itself)."""

    id: str
    name: str
    partial_key_hint: str
    status: str


def _usage_of(result: dict[str, Any]) -> KeyUsage:
    cache = result.get("cache_creation") or {}
    creation = sum(int(v or 0) for v in cache.values() if isinstance(v, int))
    return KeyUsage(
        input_tokens=int(result.get("uncached_input_tokens") or 0) + creation,
        output_tokens=int(result.get("output_tokens") or 0),
        cache_read_input_tokens=int(result.get("cache_read_input_tokens") or 0),
    )


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AdminApi:
    """A client of the Admin API for one admin key; use :meth:`open`."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, *, timeout: float = 30.0) -> AsyncIterator[AdminApi]:
        """A client for ``settings``' admin key (which must be set) and Anthropic base URL."""
        if settings.anthropic_admin_api_key is None:
            raise SettingsError(
                "ANTHROPIC_ADMIN_API_KEY", "is not set", "set it to an admin key (sk-ant-admin...)"
            )
        base = (settings.anthropic_base_url or "https://api.anthropic.com").rstrip("/")
        headers = {"x-api-key": settings.anthropic_admin_api_key.reveal(), "anthropic-version": "2023-06-01"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout) as client:
            yield cls(client)

    async def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        what = "usage report" if path == _USAGE_PATH else "key list"
        try:
            reply = await self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise UpstreamFailure(f"Admin API {what} unreachable: {type(exc).__name__}") from exc
        if reply.status_code != 200:
            hint = " (check ANTHROPIC_ADMIN_API_KEY)" if reply.status_code in (401, 403) else ""
            raise UpstreamFailure(
                f"Admin API {what} answered {reply.status_code}{hint}", status_code=reply.status_code
            )
        try:
            body = reply.json()
        except ValueError as exc:
            raise UpstreamFailure(f"Admin API {what} answered something that is not JSON") from exc
        if not isinstance(body, dict):
            raise UpstreamFailure(f"Admin API {what} answered an unexpected body")
        return body

    async def usage_by_key(self, start: datetime, end: datetime | None = None) -> dict[str, KeyUsage]:
        """Tokens per API key id from ``start`` (to ``end``, default now), in 1-minute buckets."""
        params: dict[str, Any] = {
            "starting_at": _stamp(start),
            "bucket_width": "1m",
            "group_by[]": "api_key_id",
            "limit": 1440,
        }
        if end is not None:
            params["ending_at"] = _stamp(end)
        totals: dict[str, KeyUsage] = {}
        for _ in range(_PAGES_AT_MOST):
            body = await self._get(_USAGE_PATH, params)
            for bucket in body.get("data") or []:
                for result in bucket.get("results") or []:
                    key_id = str(result.get("api_key_id") or "unknown")
                    totals[key_id] = totals.get(key_id, KeyUsage()) + _usage_of(result)
            if not (body.get("has_more") and body.get("next_page")):
                break
            params["page"] = body["next_page"]
            await asyncio.sleep(0)
        return totals

    async def api_keys(self) -> list[ApiKeyInfo]:
        """Every key of the admin key's organization, whatever its status."""
        params: dict[str, Any] = {"limit": 1000}
        keys: list[ApiKeyInfo] = []
        for _ in range(_PAGES_AT_MOST):
            body = await self._get(_KEYS_PATH, params)
            for item in body.get("data") or []:
                keys.append(
                    ApiKeyInfo(
                        id=str(item.get("id") or ""),
                        name=str(item.get("name") or ""),
                        partial_key_hint=str(item.get("partial_key_hint") or ""),
                        status=str(item.get("status") or ""),
                    )
                )
            if not (body.get("has_more") and body.get("last_id")):
                break
            params["after_id"] = body["last_id"]
        return keys


async def read_usage_report(settings: Settings, *, minutes: int = 60) -> dict[str, dict[str, int]] | None:
    """Tokens per API key id over the last ``minutes`` (1-minute buckets); None without an admin key."""
    if settings.anthropic_admin_api_key is None:
        return None
    async with AdminApi.open(settings) as admin:
        usage = await admin.usage_by_key(datetime.now(UTC) - timedelta(minutes=minutes))
    return {key_id: u.as_dict() for key_id, u in usage.items()}
