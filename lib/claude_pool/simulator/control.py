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
Slack simulator: see ``slack_server``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from claude_pool.simulator.faults import FaultRule
from claude_pool.simulator.scenario import KeySpec, Limits, derive_api_key

if TYPE_CHECKING:
    from claude_pool.simulator.anthropic_server import AnthropicSimulator

__all__ = ["add_anthropic_routes", "apply_faults_payload", "json_body"]


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


def add_anthropic_routes(app: web.Application, sim: AnthropicSimulator) -> None:
    st = sim.state

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "elapsed_s": st.elapsed()})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(st.stats().to_dict())

    async def keys(_: web.Request) -> web.Response:
        return web.json_response(st.describe())

    async def guarded(request: web.Request, action: Any) -> web.Response:
        try:
            result = action(await json_body(request))
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response({"ok": True, **(result or {})})

    async def add_key(request: web.Request) -> web.Response:
        def act(d: dict[str, Any]) -> dict[str, Any]:
            k = add_key_payload(sim, d)
            return {"key": {"name": k.name, "key": k.key, "org": k.org, "id": k.id}}

        return await guarded(request, act)

    async def reset(request: web.Request) -> web.Response:
        return await guarded(
            request, lambda d: st.reset(counters=d.get("counters", True), buckets=d.get("buckets", True))
        )

    async def faults(request: web.Request) -> web.Response:
        return await guarded(request, lambda d: apply_faults_payload(sim, d))

    async def revoke(request: web.Request) -> web.Response:
        return await guarded(request, lambda d: st.revoke(d["key"], int(d.get("status", 401))))

    async def limits(request: web.Request) -> web.Response:
        return await guarded(
            request, lambda d: st.set_limits(d["org"], Limits(int(d["rpm"]), int(d["itpm"]), int(d["otpm"])))
        )

    app.router.add_get("/_sim/health", health)
    app.router.add_get("/_sim/stats", stats)
    app.router.add_get("/_sim/keys", keys)
    app.router.add_post("/_sim/keys", add_key)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_post("/_sim/faults", faults)
    app.router.add_post("/_sim/revoke", revoke)
    app.router.add_post("/_sim/limits", limits)
