"""The HTTP API (``claude-pool serve``): admin routes, the execute endpoint, the event stream and
``/health``, as a FastAPI app built by :func:`create_app`.

A front end: may import any subpackage but ``cli`` (which serves it).
"""

from __future__ import annotations

from claude_pool.http.app import API_VERSION, create_app
from claude_pool.http.auth import ENV_VAR as TOKENS_ENV_VAR
from claude_pool.http.auth import ApiTokens, Principal

__all__ = ["API_VERSION", "TOKENS_ENV_VAR", "ApiTokens", "Principal", "create_app"]
