"""Control endpoints under ``/_sim/``, so tests in other processes can read counts and steer faults.

Anthropic simulator:
    GET  /_sim/health                      {"ok": true}
    GET  /_sim/stats                       counts per key (by name), per org and in total
    GET  /_sim/keys                        organizations (limits, admin key) and keys
    POST /_sim/keys      {name, org, key?, limits?}       add a key (and its org if limits are given)
    POST /_sim/reset     {counters?: true, buckets?: true}
    POST /_sim/faults    {faults: [...], mode?: "replace"|"append", revoke?: {key, status?}, restore?: key}
    POST /_sim/revoke    {key, status?: 401|403}
    POST /_sim/limits    {org, rpm, itpm, otpm}
    GET  /_sim/requests?key=NAME           {"key": name, "requests": [...]}: the key's last requests,
                                           oldest first (see ``state.RequestRecord.to_dict``)
Slack simulator: see ``slack_server``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from claude_pool.simulator.faults import FaultRule
from claude_pool.simulator.scenario import KeySpec, Limits, derive_api_key

if TYPE_CHECKING:
    from claude_pool.simulator.anthropic_server import AnthropicSimulator

__all__ = ["Action", "add_anthropic_routes", "add_control_routes", "apply_faults_payload", "json_body"]


async def json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="a JSON object is expected")
    return data


def apply_faults_payload(sim: AnthropicSimulator, data: dict[str, Any]) -> None:
    st = sim.state
    if "faults" in data:
        rules = [FaultRule.from_dict(f) for f in data["faults"] or ()]
        if data.get("mode", "replace") == "append":
            for rule in rules:
                st.add_fault(rule)
        else:
            st.set_faults(rules)
    if data.get("revoke"):
        st.revoke(data["revoke"]["key"], int(data["revoke"].get("status", 401)))
    if data.get("restore"):
        st.restore(data["restore"])


def add_key_payload(sim: AnthropicSimulator, data: dict[str, Any]) -> KeySpec:
    st = sim.state
    org_id = str(data["org"])
    if org_id not in st.orgs:
        if "limits" not in data:
            raise KeyError(f"organization {org_id!r} is unknown; give its limits to create it")
        st.add_org(org_id, Limits(**data["limits"]), spend_cap_tokens=data.get("spend_cap_tokens"))
    secret = data.get("key") or derive_api_key(st.scenario.seed, 2000 + len(st.keys), 0)
    return st.add_key(KeySpec(str(secret), org_id, str(data["name"])))


Action = Callable[[dict[str, Any]], dict[str, Any] | None]


def add_control_routes(
    app: web.Application, *, reads: Mapping[str, Callable[[], Any]], actions: Mapping[str, Action]
) -> None:
    """``GET /_sim/<name>`` answers ``reads[name]()`` as JSON. ``POST /_sim/<name>`` runs
    ``actions[name]`` on the JSON body (none: ``{}``) and answers ``{"ok": true, **its result}``,
    or 400 ``{"ok": false, "error"}`` when the body lacks or mistypes what the action needs."""
    for name, read in reads.items():
        app.router.add_get(f"/_sim/{name}", _read_route(read))
    for name, action in actions.items():
        app.router.add_post(f"/_sim/{name}", _action_route(action))


def _read_route(read: Callable[[], Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def route(_: web.Request) -> web.Response:
        return web.json_response(read())

    return route


def _action_route(action: Action) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def route(request: web.Request) -> web.Response:
        try:
            result = action(await json_body(request))
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response({"ok": True, **(result or {})})

    return route


def add_anthropic_routes(app: web.Application, sim: AnthropicSimulator) -> None:
    st = sim.state

    def add_key(d: dict[str, Any]) -> dict[str, Any]:
        k = add_key_payload(sim, d)
        return {"key": {"name": k.name, "key": k.key, "org": k.org, "id": k.id}}

    def set_limits(d: dict[str, Any]) -> None:
        st.set_limits(d["org"], Limits(int(d["rpm"]), int(d["itpm"]), int(d["otpm"])))

    reads = {
        "health": lambda: {"ok": True, "elapsed_s": st.elapsed()},
        "stats": lambda: st.stats().to_dict(),
        "keys": st.describe,
    }
    actions: dict[str, Action] = {
        "keys": add_key,
        "reset": lambda d: st.reset(counters=d.get("counters", True), buckets=d.get("buckets", True)),
        "faults": lambda d: apply_faults_payload(sim, d),
        "revoke": lambda d: st.revoke(d["key"], int(d.get("status", 401))),
        "limits": set_limits,
    }
    add_control_routes(app, reads=reads, actions=actions)

    async def requests(request: web.Request) -> web.Response:
        try:
            key = st.resolve_key(request.query["key"])
        except KeyError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response({"key": key.name, "requests": st.requests_of(key.name)})

    app.router.add_get("/_sim/requests", requests)
