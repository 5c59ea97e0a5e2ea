"""Requests as front ends receive them, made into validated ``DelegationRequest`` values: one
request from its fields (the HTTP body, the ``delegate`` flow's parameters), and a batch of them
from a list or a JSON Lines file. A wrong value raises ``InvalidInput`` naming where it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from claude_pool.core.errors import InvalidInput
from claude_pool.pool.models import DelegationRequest

__all__ = ["batch_requests", "delegation_request"]


def delegation_request(
    organization_id: str, *, timeout_seconds: float | None = None, **fields: Any
) -> DelegationRequest:
    """The request made of ``fields`` (``DelegationRequest``'s own names; ``None`` means "the
    default"); ``timeout_seconds`` becomes its deadline, counted from now."""
    given = {"organization_id": organization_id, **{k: v for k, v in fields.items() if v is not None}}
    if timeout_seconds is not None:
        given["deadline"] = time.time() + timeout_seconds
    try:
        return DelegationRequest.model_validate(given)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "messages"
        raise InvalidInput(field, str(error["msg"]).removeprefix("Value error, ")) from None


def batch_requests(
    requests: Sequence[Any] | None, jsonl_path: str | None, defaults: Mapping[str, Any], batch_id: str
) -> list[dict[str, Any]]:
    """A batch's requests, from ``requests`` or from the JSON Lines file at ``jsonl_path`` (exactly
    one of the two), each merged over ``defaults`` (those not ``None``) and validated, as plain values. Each gets an
    idempotency key (``{batch_id}-{n}``) unless it has one, so a retried chunk never repeats a call."""
    if (requests is None) == (jsonl_path is None):
        raise InvalidInput(
            "requests", "give either requests (a list) or jsonl_path (a file)", "not both, not neither"
        )
    raw = list(requests) if requests is not None else _read_jsonl(Path(str(jsonl_path)))
    validated = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidInput(f"requests[{i}]", "must be an object with message or messages")
        merged = {**{k: v for k, v in defaults.items() if v is not None}, **item}
        merged.setdefault("idempotency_key", f"{batch_id}-{i}")
        try:
            validated.append(DelegationRequest.model_validate(merged).model_dump(mode="json"))
        except ValueError as exc:
            raise InvalidInput(f"requests[{i}]", str(exc).splitlines()[-1].strip()) from None
    return validated


def _read_jsonl(path: Path) -> list[Any]:
    if not path.exists():
        raise InvalidInput("jsonl_path", f"{path} does not exist")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"jsonl_path line {n}", f"not valid JSON: {exc.msg}") from None
    return items
