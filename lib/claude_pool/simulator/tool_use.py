"""Tool use: when a request forces a tool (``tool_choice`` of type ``tool`` or ``any``), the simulated
model calls it, with an input built from the tool's ``input_schema``.

With ``tool_choice`` ``auto`` (or none) the model answers text: a test that wants a tool call says so,
and every other request keeps the cheap text path. As upstream does for a forced tool, the answer is a
single ``tool_use`` block with no text before it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from claude_pool.simulator.tokens import CHARS_PER_TOKEN

__all__ = ["ToolCall", "example_input", "forced_tool", "plan_tool_call", "stop_reason"]

_CHOICE_TYPES = frozenset({"auto", "any", "tool", "none"})
# Nested object schemas deeper than this get an empty object: schemas can be recursive through $ref.
_MAX_DEPTH = 8
_SIMPLE: dict[str, Any] = {"string": "example", "integer": 1, "number": 1, "boolean": True, "null": None}


def forced_tool(body: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str | None]:
    """The tool ``body`` forces the model to call (or None), and the body's first tool problem in
    upstream's words (or None)."""
    tools = body.get("tools")
    if tools is not None and (
        not isinstance(tools, list)
        or not all(isinstance(t, Mapping) and isinstance(t.get("name"), str) for t in tools)
    ):
        return None, "tools: Input should be a list of tools, each with a name"
    choice = body.get("tool_choice")
    if choice is None:
        return None, None
    if not isinstance(choice, Mapping) or choice.get("type") not in _CHOICE_TYPES:
        return None, "tool_choice: Input should be an object of type auto, any, tool or none"
    kind = choice["type"]
    if kind in ("auto", "none"):
        return None, None
    if not tools:
        return None, f"tool_choice: tools must be given when tool_choice.type is {kind!r}"
    if kind == "any":
        # A client tool (one with an input schema) before a server tool such as web search.
        return next((t for t in tools if "input_schema" in t), tools[0]), None
    name = choice.get("name")
    for tool in tools:
        if tool["name"] == name:
            return tool, None
    return None, f"tool_choice.name: no tool named {name!r} in tools"


def example_input(schema: Any, depth: int = 0) -> Any:
    """A value that satisfies the simple parts of a JSON schema: its ``const``, ``default`` or first
    ``enum`` value when it has one, else a plain value of its type; objects hold their required
    properties only."""
    if not isinstance(schema, Mapping):
        return "example"
    for word in ("const", "default"):
        if word in schema:
            return schema[word]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for word in ("anyOf", "oneOf", "allOf"):
        options = schema.get(word)
        if isinstance(options, list) and options:
            return example_input(options[0], depth)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties")
        if depth >= _MAX_DEPTH or not isinstance(properties, Mapping):
            return {}
        required = schema.get("required")
        names = [n for n in required if n in properties] if isinstance(required, list) else []
        return {name: example_input(properties[name], depth + 1) for name in names}
    if kind == "array":
        return []
    return _SIMPLE.get(kind, "example")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One ``tool_use`` block: ``input_json`` is what a stream sends in ``input_json_delta`` pieces."""

    id: str
    name: str
    input: Any
    input_json: str

    @property
    def tokens(self) -> int:
        """Output tokens of the call, by the simulator's rule of CHARS_PER_TOKEN characters a token."""
        return max(1, -(-len(self.input_json) // CHARS_PER_TOKEN))

    def block(self) -> dict[str, Any]:
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": self.input}

    def start_block(self) -> dict[str, Any]:
        """The block as ``content_block_start`` announces it: its input arrives in deltas after."""
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": {}}


def plan_tool_call(tool: Mapping[str, Any], tool_use_id: str) -> ToolCall:
    value = example_input(tool.get("input_schema", {}))
    if not isinstance(value, dict):
        value = {}  # a tool's input is an object whatever its schema says
    return ToolCall(
        tool_use_id, str(tool["name"]), value, json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    )


def stop_reason(out: int, max_tokens: int, call: ToolCall | None) -> str:
    """Why an answer of ``out`` tokens ended: a whole tool call, max_tokens reached, or the end of a turn."""
    if call is not None and out == call.tokens:
        return "tool_use"
    return "max_tokens" if out == max_tokens else "end_turn"
