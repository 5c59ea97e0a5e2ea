"""The Models API, ``GET /v1/models`` and ``GET /v1/models/{model_id}``, for API keys.

It lists the scenario's models when it names some, else :data:`DEFAULT_MODELS`, newest first, and pages
them by ``limit``, ``after_id`` and ``before_id`` as upstream does. Calls are counted (``models``) and
recorded in the request log, but not rate limited: the buckets model message traffic only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiMapping

from claude_pool.simulator import wire

if TYPE_CHECKING:
    from claude_pool.simulator.anthropic_server import AnthropicSimulator

__all__ = ["DEFAULT_MODELS", "ModelCatalogue", "add_routes", "display_name"]

#: Current model ids (the ``anthropic`` 2.16 client's list without its deprecated ones), newest first.
#: The pool's default model, ``claude-sonnet-5-5``, is among them.
DEFAULT_MODELS = (
    "claude-fable-5-2",
    "claude-mythos-5-2",
    "claude-haiku-5-5",
    "claude-sonnet-5-5",
    "claude-opus-5-5",
    "claude-fable-5-1",
    "claude-mythos-5-1",
    "claude-sonnet-5",
    "claude-fable-5",
    "claude-mythos-5",
    "claude-opus-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-haiku-4-5-20251001",
)
_LINES = frozenset({"haiku", "sonnet", "opus", "fable", "mythos"})
_DATED = re.compile(r"^(?P<alias>.+)-(?P<date>\d{8})$")
# Models without a date in their id are given release dates this far apart, newest first from here.
_NEWEST = datetime(2026, 11, 1, tzinfo=UTC)
_SPACING = timedelta(days=21)
_DEFAULT_LIMIT = 20
_MAX_LIMIT = 1000


def display_name(model_id: str) -> str:
    """``claude-haiku-4-5-20251001`` -> ``Claude Haiku 4.5``: words capitalised, version numbers
    joined by dots, a date suffix dropped."""
    dated = _DATED.match(model_id)
    words: list[str] = []
    for part in (dated["alias"] if dated else model_id).split("-"):
        if part.isdigit() and words and words[-1][-1:].isdigit():
            words[-1] += "." + part
        else:
            words.append(part.capitalize())
    return " ".join(words)


def _model_info(model_id: str, position: int) -> dict[str, Any]:
    dated = _DATED.match(model_id)
    if dated:
        created = datetime.strptime(dated["date"], "%Y%m%d").replace(tzinfo=UTC)
    else:
        created = _NEWEST - position * _SPACING
    parts = model_id.split("-")
    line = parts[1] if len(parts) > 1 and parts[0] == "claude" and parts[1] in _LINES else None
    return {
        "type": "model",
        "id": model_id,
        "display_name": display_name(model_id),
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lifecycle": "active",
        "deprecated_at": None,
        "retires_at": None,
        "line": line,
    }


class ModelCatalogue:
    """The models one simulator lists, in order, and the aliases (a dated id without its date) that
    ``retrieve`` resolves."""

    def __init__(self, model_ids: Sequence[str]) -> None:
        self._infos = [_model_info(model_id, i) for i, model_id in enumerate(model_ids)]
        self._by_id = {info["id"]: info for info in self._infos}
        for model_id in model_ids:
            dated = _DATED.match(model_id)
            if dated:
                self._by_id.setdefault(dated["alias"], self._by_id[model_id])

    @property
    def ids(self) -> list[str]:
        return [info["id"] for info in self._infos]

    def get(self, model_id: str) -> dict[str, Any] | None:
        return self._by_id.get(model_id)

    def page(self, query: MultiMapping[str]) -> dict[str, Any]:
        """The list body for the URL's parameters. Raises ValueError, in upstream's words."""
        try:
            limit = int(query.get("limit", _DEFAULT_LIMIT))
        except ValueError:
            raise ValueError("limit: Input should be a valid integer") from None
        if not 1 <= limit <= _MAX_LIMIT:
            raise ValueError(f"limit: Input should be between 1 and {_MAX_LIMIT}")
        after, before = query.get("after_id"), query.get("before_id")
        if after and before:
            raise ValueError("after_id and before_id cannot be given together")
        # Every simulated model is active; without a filter upstream lists active and deprecated ones.
        lifecycle = [*query.getall("lifecycle[]", ()), *query.getall("lifecycle", ())]
        infos = self._infos if not lifecycle or "active" in lifecycle else []
        if before:
            end = self._position(infos, before, "before_id")
            start = max(0, end - limit)
            has_more = start > 0
        else:
            start = self._position(infos, after, "after_id") + 1 if after else 0
            end = start + limit
            has_more = end < len(infos)
        data = infos[start:end]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    @staticmethod
    def _position(infos: list[dict[str, Any]], model_id: str, param: str) -> int:
        for i, info in enumerate(infos):
            if info["id"] == model_id:
                return i
        raise ValueError(f"{param}: no model {model_id!r} in this list")


def add_routes(app: web.Application, sim: AnthropicSimulator) -> None:
    async def list_models(request: web.Request) -> web.Response:
        rid = sim.ids.request_id()
        key = sim.admit_models_call(request, rid)
        if isinstance(key, web.Response):
            return key
        headers = {"request-id": rid, "anthropic-organization-id": key.org}
        try:
            body = sim.catalogue.page(request.query)
        except ValueError as exc:
            return wire.error_response(400, "invalid_request_error", str(exc), rid, headers=headers)
        return web.json_response(body, headers=headers)

    async def retrieve_model(request: web.Request) -> web.Response:
        rid = sim.ids.request_id()
        key = sim.admit_models_call(request, rid)
        if isinstance(key, web.Response):
            return key
        headers = {"request-id": rid, "anthropic-organization-id": key.org}
        model_id = request.match_info["model_id"]
        info = sim.catalogue.get(model_id)
        if info is None:
            return wire.error_response(404, "not_found_error", f"model: {model_id}", rid, headers=headers)
        return web.json_response(info, headers=headers)

    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id}", retrieve_model)
