"""The Admin API usage report, ``GET /v1/organizations/usage_report/messages``, for admin keys.

Counts come from the simulator's own served tokens, bucketed by UTC minute as they were served, so a
test can reconcile what the pool believes it spent with what the "provider" reports.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from claude_pool.simulator import wire
from claude_pool.simulator.scenario import OrgSpec

if TYPE_CHECKING:
    from claude_pool.simulator.anthropic_server import AnthropicSimulator

__all__ = ["add_routes", "usage_report"]

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


def add_routes(app: web.Application, sim: AnthropicSimulator) -> None:
    async def usage(request: web.Request) -> web.Response:
        rid = sim.ids.request_id()
        org = sim.state.admin_keys.get(request.headers.get("x-api-key", ""))
        if org is None:
            return wire.error_response(401, "authentication_error", "invalid x-api-key", rid)
        try:
            body = usage_report(sim, org, request.query)
        except (ValueError, KeyError) as exc:
            return wire.error_response(400, "invalid_request_error", str(exc), rid)
        return web.json_response(body, headers={"request-id": rid, "anthropic-organization-id": org.id})

    app.router.add_get("/v1/organizations/usage_report/messages", usage)
