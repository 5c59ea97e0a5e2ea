"""The Admin API, for admin keys: the usage report, ``GET /v1/organizations/usage_report/messages``,
and the organization's keys, ``GET /v1/organizations/api_keys``.

Counts come from the simulator's own served tokens, bucketed by UTC minute as they were served, so a
test can reconcile what the pool believes it spent with what the "provider" reports. The key list
names each key by the id the usage report groups by and by its ``partial_key_hint`` (the first 16
and last 4 characters, as upstream shows them): how a holder of the key tells which id is its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from claude_pool.simulator import wire
from claude_pool.simulator.scenario import KeySpec, OrgSpec

if TYPE_CHECKING:
    from claude_pool.simulator.anthropic_server import AnthropicSimulator

__all__ = ["add_routes", "api_keys", "partial_key_hint", "usage_report"]

_WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
# (default number of buckets, maximum) per width, as documented upstream.
_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}


def _parse_time(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp())


def _result(key_id: str | None, uncached: int, output: int) -> dict[str, Any]:
    return {
        "uncached_input_tokens": uncached,
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "cache_read_input_tokens": 0,
        "output_tokens": output,
        "server_tool_use": {"web_search_requests": 0},
        "api_key_id": key_id,
        "workspace_id": None,
        "model": None,
        "service_tier": None,
        "context_window": None,
    }


def usage_report(sim: AnthropicSimulator, org: OrgSpec, query: Any) -> dict[str, Any]:
    """The report body for ``query`` (a multidict of the URL's parameters). Raises ValueError."""
    width_name = query.get("bucket_width", "1d")
    if width_name not in _WIDTHS:
        raise ValueError("bucket_width: must be one of 1m, 1h, 1d")
    if "starting_at" not in query:
        raise ValueError("starting_at: Field required")
    width = _WIDTHS[width_name]
    start = _parse_time(query.get("page") or query["starting_at"]) // width * width
    default_n, max_n = _LIMITS[width_name]
    n = min(int(query.get("limit", default_n)), max_n)
    now = int(sim.state.wall(sim.state.now()))
    end = _parse_time(query["ending_at"]) if "ending_at" in query else now + width
    group_by = set(query.getall("group_by[]", [])) | set(query.getall("group_by", []))
    by_key = "api_key_id" in group_by
    keys = {k.key: k for k in sim.state.keys.values() if k.org == org.id}

    data: list[dict[str, Any]] = []
    t = start
    while t < end and len(data) < n:
        sums: dict[str | None, list[int]] = {}
        for (minute, secret), (inp, out) in sim.state.usage.items():
            if t <= minute < t + width and secret in keys:
                cell = sums.setdefault(keys[secret].id if by_key else None, [0, 0])
                cell[0] += inp
                cell[1] += out
        results = [
            _result(kid, inp, out) for kid, (inp, out) in sorted(sums.items(), key=lambda i: str(i[0]))
        ]
        data.append(
            {"starting_at": wire.rfc3339(t), "ending_at": wire.rfc3339(t + width), "results": results}
        )
        t += width
    has_more = t < end
    return {"data": data, "has_more": has_more, "next_page": wire.rfc3339(t) if has_more else None}


def partial_key_hint(secret: str) -> str:
    """What upstream shows of a key in its list: ``sk-ant-api03-R2D...igAA``."""
    return f"{secret[:16]}...{secret[-4:]}"


def _key_object(sim: AnthropicSimulator, key: KeySpec, order: int) -> dict[str, Any]:
    return {
        "id": key.id,
        "type": "api_key",
        "name": key.name,
        "partial_key_hint": partial_key_hint(key.key),
        # A revoked key answers 401/403: upstream lists such a key as no longer active.
        "status": "inactive" if key.key in sim.state.revoked else "active",
        "created_at": wire.rfc3339(int(sim.state.started_wall) + order),
        "created_by": {"id": "user_01simulator", "type": "user"},
        "expires_at": None,
        "scope": {"type": "workspace", "workspace_id": f"wrkspc_01default{key.org[:8]}"},
    }


def api_keys(sim: AnthropicSimulator, org: OrgSpec, query: Any) -> dict[str, Any]:
    """One page of the organization's keys, oldest first, paged by ``after_id`` (raises ValueError)."""
    limit = int(query.get("limit", 20))
    if not 1 <= limit <= 1000:
        raise ValueError("limit: must be between 1 and 1000")
    keys = [_key_object(sim, k, n) for n, k in enumerate(sim.state.keys.values()) if k.org == org.id]
    if query.get("status"):
        keys = [k for k in keys if k["status"] == query["status"]]
    ids = [k["id"] for k in keys]
    after = query.get("after_id")
    start = ids.index(after) + 1 if after in ids else 0
    page = keys[start : start + limit]
    return {
        "data": page,
        "has_more": start + limit < len(keys),
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


def _admin_org(sim: AnthropicSimulator, request: web.Request) -> OrgSpec | None:
    """The organization of the admin key in ``x-api-key`` (or ``Authorization: Bearer``)."""
    secret = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix(
        "Bearer "
    )
    return sim.state.admin_keys.get(secret.strip())


def _admin_route(
    sim: AnthropicSimulator, answer: Callable[[AnthropicSimulator, OrgSpec, Any], dict[str, Any]]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        rid = sim.ids.request_id()
        org = _admin_org(sim, request)
        if org is None:
            return wire.error_response(401, "authentication_error", "invalid x-api-key", rid)
        try:
            body = answer(sim, org, request.query)
        except (ValueError, KeyError) as exc:
            return wire.error_response(400, "invalid_request_error", str(exc), rid)
        return web.json_response(body, headers={"request-id": rid, "anthropic-organization-id": org.id})

    return handle


def add_routes(app: web.Application, sim: AnthropicSimulator) -> None:
    app.router.add_get("/v1/organizations/usage_report/messages", _admin_route(sim, usage_report))
    app.router.add_get("/v1/organizations/api_keys", _admin_route(sim, api_keys))
