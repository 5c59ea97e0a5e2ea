"""The drop-in endpoint's calls that reserve no message capacity: token counting and the model
list, served through the tenant's own accounts.

Upstream limits ``count_tokens`` on its own and does not rate-limit the model list like messages,
so neither goes through the capacity store; each still runs only on an active account of the
caller's organization whose circuit lets calls through, starting from the next account each time
so that no key carries them all, and fails over on what another account could answer (a rate
limit, an overload, a rejected key, an unreachable upstream). The caller's own mistake (a 400, a
404) comes back as upstream sent it, at once. The model list is cached briefly per organization.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anthropic

from claude_pool.core.errors import AccountUnavailability, NoAccountAvailable, UpstreamError, UpstreamFailure
from claude_pool.pool.classify import OutcomeKind
from claude_pool.storage import AccountStatus

if TYPE_CHECKING:
    from claude_pool.pool._engine import Pool
    from claude_pool.pool.directory import PoolAccount

__all__ = ["LightCalls", "RawAnswer"]

#: Answers a caller gets as they came: its own request was wrong, another account would say the same.
_CALLERS_OWN = frozenset({OutcomeKind.CALLER_ERROR})


@dataclass(frozen=True)
class RawAnswer:
    """Upstream's answer as it came: status, body bytes, and its request id."""

    status: int
    content: bytes
    request_id: str | None
    content_type: str = "application/json"


class LightCalls:
    def __init__(self, pool: Pool, *, models_ttl: float = 60.0) -> None:
        self.pool = pool
        self.models_ttl = models_ttl
        self._turn = itertools.count()
        self._models: dict[tuple[object, ...], tuple[float, RawAnswer]] = {}

    async def count_tokens(
        self, organization_id: str, body: Mapping[str, object], headers: Mapping[str, str]
    ) -> RawAnswer:
        return await self._served(organization_id, "POST", "/v1/messages/count_tokens", body, None, headers)

    async def models(
        self, organization_id: str, path: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> RawAnswer:
        """``GET /v1/models`` or ``/v1/models/{id}``, cached for ``models_ttl`` seconds."""
        key = (organization_id, path, tuple(sorted(params.items())), tuple(sorted(headers.items())))
        cached = self._models.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        answer = await self._served(organization_id, "GET", path, None, params, headers)
        if answer.status == 200:
            self._models[key] = (now + self.models_ttl, answer)
        return answer

    async def _served(
        self,
        organization_id: str,
        method: str,
        path: str,
        body: Mapping[str, object] | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
    ) -> RawAnswer:
        accounts = await self._usable(organization_id)
        last: UpstreamError | None = None
        for account in accounts:
            key = self.pool.accounts.keyring.decrypt(account.api_key_encrypted, account_id=account.id)
            try:
                response = await self.pool.upstream.call(
                    key, method, path, body=body, params=params, headers=headers
                )
            except Exception as exc:
                answer, last = self._judged(exc, account.id)
                if answer is not None:
                    return answer
                continue
            finally:
                del key
            return RawAnswer(response.status_code, response.content, response.headers.get("request-id"))
        raise last or UpstreamFailure("no account answered")

    def _judged(self, exc: Exception, account_id: str) -> tuple[RawAnswer | None, UpstreamError | None]:
        """The caller's own mistake as upstream sent it, or the error that sends us to the next account."""
        outcome = self.pool.policy.classify(exc, account_id=account_id)
        if outcome.error is None:
            raise exc  # not an upstream outcome: a bug, or our caller's cancellation
        if outcome.kind in _CALLERS_OWN and isinstance(exc, anthropic.APIStatusError):
            response = exc.response
            return RawAnswer(response.status_code, response.content, response.headers.get("request-id")), None
        return None, outcome.error

    async def _usable(self, organization_id: str) -> list[PoolAccount]:
        """The organization's active accounts whose circuit lets calls through, rotated by one each call."""
        accounts = [a for a in await self.pool.directory.all() if a.organization_id == organization_id]
        active = [a for a in accounts if a.status == AccountStatus.ACTIVE]
        views = await self.pool.breaker.states([a.id for a in active]) if active else {}
        usable = [a for a in active if (v := views.get(a.id)) is None or v.available]
        if not accounts:
            message = f"organization {organization_id!r} has no account in the pool; register one first"
            raise NoAccountAvailable([], message=message)
        if not usable:
            raise NoAccountAvailable(
                [
                    AccountUnavailability(a.id, a.name, "circuit open" if a in active else a.status, None)
                    for a in accounts
                ]
            )
        start = next(self._turn) % len(usable)
        return usable[start:] + usable[:start]
