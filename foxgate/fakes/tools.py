"""How every fake model uses tools and structured output, whatever the wire format it speaks.

- A forced choice (OpenAI's ``required`` or a named function, Anthropic's ``any`` or ``tool``, Gemini's
  ``ANY``) calls the named tool, or the first one, with arguments made from its parameters' schema.
- Left to choose, the model calls the first tool whose name the last user text mentions, unless the
  last turn answered its calls: then it speaks, saying what the tools returned
  (``"Tool said: <result>"``). Told not to call (``none``), it never does.
- Asked for structured output, the reply is a JSON document valid for the schema given, or, with no
  schema, a JSON object echoing the last user text.

The arguments and documents come from ``example``: the smallest instance the schema describes, with
every property filled in, so a client can check them against the schema it sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

STRING_EXAMPLE = "example"


@dataclass(frozen=True)
class Tool:
    name: str
    schema: dict[str, Any]


def pick(
    tools: list[Tool], *, forced: str | bool | None, never: bool, answered: bool, last_user_text: str
) -> Tool | None:
    """The tool the model calls, or None when it answers in text.

    ``forced`` is a tool's name, True for any tool, or None for the model's own choice; ``never``
    forbids calls; ``answered`` says the last turn carried tool results."""
    if not tools or never:
        return None
    if isinstance(forced, str):
        return next((tool for tool in tools if tool.name == forced), None)
    if forced:
        return tools[0]
    if answered:
        return None
    return next((tool for tool in tools if tool.name in last_user_text), None)


def tool_result_reply(results: list[str]) -> str:
    return "Tool said: " + "; ".join(results)


def structured_reply(schema: dict[str, Any] | None, last_user_text: str) -> str:
    document = example(schema) if schema else {"echo": last_user_text}
    return json.dumps(document)


def example(schema: Any, root: dict[str, Any] | None = None) -> Any:
    """The smallest instance of a JSON Schema (or Gemini's OpenAPI-style Schema): objects with every
    property, arrays of their minimum length, the first enum value or alternative, numbers at their
    lower bound. `$ref`s into the root's `$defs` or `definitions` are followed."""
    root = root if root is not None else schema
    if not isinstance(schema, dict):
        return {}
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        definitions = root.get("$defs") or root.get("definitions") or {}
        return example(definitions.get(name, {}), root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example(schema[key][0], root)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged |= example(part, root) or {}
        return merged
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = kind.lower()
    if kind == "object":
        return {name: example(prop, root) for name, prop in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example(schema.get("items", {}), root) for _ in range(schema.get("minItems", 1))]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        return int(low) if kind == "integer" else float(low)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = {"date": "2026-01-01", "date-time": "2026-01-01T00:00:00Z"}.get(
        schema.get("format"), STRING_EXAMPLE
    )
    text *= schema.get("minLength", 0) // len(text) + 1
    return text[: schema["maxLength"]] if "maxLength" in schema else text
