"""Admin bearer tokens, each scoped to some organizations or to all of them.

``CLAUDE_POOL_API_TOKENS`` holds the tokens, in either form:

- JSON: ``{"<token>": ["org-a", "org-b"], "<token2>": "*"}``
- plain: ``<token>=org-a,org-b;<token2>=*`` (entries separated by ``;`` or new lines)

A token is at least 16 characters of printable ASCII without spaces (what an ``Authorization``
header carries); an organization id is 1 to 64 letters, digits, ``_``, ``.``, ``:`` or ``-``
starting with a letter or digit; ``*`` stands for every organization. The README's "HTTP API"
section says the same, with examples that ``tests/http/test_token_docs.py`` parses.

Only SHA-256 digests of the tokens are kept once loaded; a presented token is hashed and compared
with every digest in constant time (``hmac.compare_digest``, no early exit), so neither the
process's memory nor the response time tells a token. Authentication happens in an ASGI middleware,
before the body is even read: an unauthenticated caller learns nothing, not even whether its JSON
was valid. Only ``/health`` answers without a token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from claude_pool.core.errors import SettingsError
from claude_pool.http.anthropic_errors import ANTHROPIC_PATHS, anthropic_error
from claude_pool.http.errors import ApiError

__all__ = [
    "ALL_ORGANIZATIONS",
    "ENV_VAR",
    "PUBLIC_PATHS",
    "ApiTokens",
    "AuthMiddleware",
    "Principal",
    "current_principal",
]

ENV_VAR = "CLAUDE_POOL_API_TOKENS"
ALL_ORGANIZATIONS = "*"
# /slack/events authenticates each request by Slack's signature instead (http/slack_app.py).
PUBLIC_PATHS = frozenset({"/health", "/slack/events"})
_MIN_TOKEN_LENGTH = 16
_TOKEN_SHAPE = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces, as a header carries it
_ORG_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")
_FIX = 'set it to JSON such as {"<token>": ["org-a"], "<admin-token>": "*"} or to <token>=org-a,org-b;<admin-token>=*'


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``organizations`` None means every organization (a ``*`` token)."""

    token_id: str  # the first hex digits of the token's digest: safe to log
    organizations: frozenset[str] | None

    @property
    def is_global(self) -> bool:
        return self.organizations is None

    def can_see(self, organization_id: str | None) -> bool:
        return self.organizations is None or organization_id in self.organizations

    def require(self, organization_id: str, *, field: str = "organizationId") -> None:
        """403 for an organization outside the token's: the caller named it, nothing leaks."""
        if not self.can_see(organization_id):
            raise ApiError(
                403, "forbidden", f"this token may not act for organization {organization_id!r}", field=field
            )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class ApiTokens:
    def __init__(self, scopes: Mapping[str, Collection[str] | str]) -> None:
        self._entries: list[tuple[bytes, frozenset[str] | None]] = []
        for n, (token, scope) in enumerate(scopes.items(), 1):
            if len(token) < _MIN_TOKEN_LENGTH or not _TOKEN_SHAPE.fullmatch(token):
                problem = (
                    f"is {len(token)} characters long (at least {_MIN_TOKEN_LENGTH} needed)"
                    if len(token) < _MIN_TOKEN_LENGTH
                    else "holds a space or a character outside printable ASCII"
                )
                raise SettingsError(
                    ENV_VAR,
                    f"token #{n} {problem}",
                    "use long random tokens, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                )
            self._entries.append((_digest(token), self._scope(n, scope)))

    @staticmethod
    def _scope(n: int, scope: Collection[str] | str) -> frozenset[str] | None:
        orgs = [scope] if isinstance(scope, str) else list(scope)
        if ALL_ORGANIZATIONS in orgs:
            return None
        bad = [o for o in orgs if not isinstance(o, str) or not _ORG_SHAPE.fullmatch(o)]
        if not orgs or bad:
            raise SettingsError(ENV_VAR, f"token #{n} has no valid organization list", _FIX)
        return frozenset(orgs)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ApiTokens({len(self._entries)} tokens)"

    @classmethod
    def parse(cls, text: str) -> ApiTokens:
        text = text.strip()
        if not text:
            return cls({})
        if text.startswith("{"):
            try:
                raw: Any = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SettingsError(ENV_VAR, f"not valid JSON (line {exc.lineno})", _FIX) from None
            if not isinstance(raw, dict) or not all(isinstance(v, str | list) for v in raw.values()):
                raise SettingsError(
                    ENV_VAR, "the JSON must map each token to a list of organizations or '*'", _FIX
                )
            return cls(raw)
        scopes: dict[str, list[str]] = {}
        for n, entry in enumerate(_entries(text), 1):
            token, sep, orgs = entry.partition("=")
            if not sep:
                raise SettingsError(ENV_VAR, f"entry #{n} has no '='", _FIX)
            scopes[token.strip()] = [o.strip() for o in orgs.split(",") if o.strip()]
        return cls(scopes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiTokens:
        env = os.environ if env is None else env
        return cls.parse(env.get(ENV_VAR, ""))

    def authenticate(self, token: str) -> Principal | None:
        presented = _digest(token)
        matched = False
        organizations: frozenset[str] | None = None
        for digest, scope in self._entries:
            # Compare with every entry, matched or not: the time taken says nothing about which.
            if hmac.compare_digest(presented, digest):
                matched, organizations = True, scope
        if not matched:
            return None
        return Principal(presented.hex()[:12], organizations)


def _entries(text: str) -> Iterable[str]:
    for line in text.replace(";", "\n").splitlines():
        if line.strip():
            yield line.strip()


def _unauthorized(message: str, *, invalid: bool, anthropic_shaped: bool = False) -> Any:
    challenge = 'Bearer realm="claude-pool"' + (', error="invalid_token"' if invalid else "")
    headers = {"WWW-Authenticate": challenge}
    if anthropic_shaped:  # what an Anthropic SDK turns into its AuthenticationError
        return anthropic_error(401, "authentication_error", message, headers=headers)
    return ApiError(401, "unauthorized", message, headers=headers).response()


class AuthMiddleware:
    """Authenticates every HTTP request but ``/health`` before routing; puts the principal in the
    request state for the route's own organization checks."""

    def __init__(self, app: ASGIApp, tokens: ApiTokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = api_key = ""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value.decode("latin-1")
            elif name == b"x-api-key":
                api_key = value.decode("latin-1").strip()
        # The Anthropic SDKs send their key as x-api-key (api_key=) or a bearer token (auth_token=):
        # the drop-in endpoint takes the pool token either way.
        scheme, _, token = header.partition(" ")
        if api_key and not header:
            scheme, token = "bearer", api_key
        anthropic_shaped = scope["path"].startswith(ANTHROPIC_PATHS)
        if not header and not api_key:
            response = _unauthorized(
                "missing bearer token: send 'Authorization: Bearer <token>'"
                + (" or 'x-api-key: <token>'" if anthropic_shaped else ""),
                invalid=False,
                anthropic_shaped=anthropic_shaped,
            )
        elif scheme.lower() != "bearer" or not token.strip():
            response = _unauthorized(
                "the Authorization header must be 'Bearer <token>'",
                invalid=True,
                anthropic_shaped=anthropic_shaped,
            )
        else:
            principal = self.tokens.authenticate(token.strip())
            if principal is not None:
                scope.setdefault("state", {})["principal"] = principal
                await self.app(scope, receive, send)
                return
            response = _unauthorized("invalid bearer token", invalid=True, anthropic_shaped=anthropic_shaped)
        await response(scope, receive, send)


# Declared on the routes so that the OpenAPI schema shows the bearer scheme; the middleware has
# already checked the token by the time this runs.
_bearer = HTTPBearer(auto_error=False, scheme_name="bearerAuth", description=f"a token from {ENV_VAR}")


async def current_principal(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):  # only reachable if the middleware is not installed
        raise ApiError(401, "unauthorized", "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return principal
