"""The deployments' forms as the Prefect UI renders them: every parameter described, choices as
enums, and each deployment described by its flow's docstring."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema

from claude_pool.core.config import Strategy
from claude_pool_flows import capacity_sync, delegate, delegate_batch, health_check, quota_sweep

FLOWS = [delegate, delegate_batch, capacity_sync, quota_sweep, health_check]


def _resolved(schema: dict[str, Any], prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The property's own schema and whatever it refers to (through anyOf and $ref)."""
    found = [prop]
    for option in prop.get("anyOf", []) + prop.get("allOf", []):
        found += _resolved(schema, option)
    ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
    if ref:
        found.append(schema["definitions"][ref.rsplit("/", 1)[1]])
    return found


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_every_parameter_has_a_description_and_the_deployment_its_flows_docstring(flow: Any) -> None:
    deployment = flow.to_deployment(name=flow.name)
    schema = parameter_schema(flow).model_dump()  # what `prefect deploy` and serve send
    undescribed = [name for name, prop in schema["properties"].items() if not prop.get("description")]
    assert undescribed == []
    assert deployment.description and deployment.description == flow.description
    assert flow.timeout_seconds, "every flow has a timeout"


def test_the_delegate_form_offers_the_strategies_a_conversation_and_the_default_model() -> None:
    schema = parameter_schema(delegate).model_dump()
    props = schema["properties"]
    enums = [s["enum"] for s in _resolved(schema, props["strategy"]) if "enum" in s]
    assert enums == [[s.value for s in Strategy]]
    message = next(s for s in _resolved(schema, props["messages"]) if "properties" in s)
    assert set(message["properties"]) == {"role", "content"}
    assert all(p.get("description") for p in message["properties"].values())
    assert props["model"]["default"] == "claude-sonnet-5-5"
