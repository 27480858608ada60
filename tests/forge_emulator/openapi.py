"""Check the emulator's GitHub traffic against GitHub's OpenAPI description.

Uses the subset vendored in ``tests/openapi/github-subset.json`` (see its
``extract.py``). Request bodies sent by PyGithub and responses sent back are both
validated; the emulator also fills the required fields it does not model from the
schema (``complete``) so PyGithub sees documents shaped like GitHub's.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator

SUBSET = Path(__file__).resolve().parent.parent / "openapi" / "github-subset.json"
_DEFAULTS = {
    "date-time": "2026-01-01T00:00:00Z",
    "uri": "https://github.invalid/",
    "email": "nobody@example.invalid",
}


@cache
def spec() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SUBSET.read_text())
    return data


def _resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operation(method: str, template: str) -> dict[str, Any] | None:
    return spec()["paths"].get(template, {}).get(method.lower())


def _json_schema(container: Any) -> dict[str, Any] | None:
    container = _resolve(container)
    if not isinstance(container, dict):
        return None
    media = container.get("content", {}).get("application/json")
    return None if media is None else media.get("schema")


def request_schema(method: str, template: str) -> dict[str, Any] | None:
    op = operation(method, template)
    return None if op is None or "requestBody" not in op else _json_schema(op["requestBody"])


def response_schema(
    method: str, template: str, status: int, *, default: bool = True
) -> dict[str, Any] | None:
    op = operation(method, template)
    if op is None:
        return None
    responses = op.get("responses", {})
    found = responses.get(str(status)) or (responses.get("default") if default else None)
    return None if found is None else _json_schema(found)


def validate(schema: dict[str, Any], document: Any) -> list[str]:
    """Messages for every way ``document`` breaks ``schema`` (empty when valid)."""
    # Local "#/components/..." references resolve against the wrapper's root.
    validator = OAS30Validator({"allOf": [schema], "components": spec()["components"]})
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}"
        for e in validator.iter_errors(document)
    ]


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for part in schema["allOf"]:
        part = _flatten(part)
        merged["properties"].update(part.get("properties", {}))
        merged["required"] += part.get("required", [])
    return merged


def _score(schema: dict[str, Any], value: Any) -> float:
    kind = schema.get("type", "object")
    if isinstance(value, list):
        return 1.0 if kind == "array" else -1.0
    if isinstance(value, dict):
        if kind != "object":
            return -1.0
        props = schema.get("properties", {})
        return sum(k in props for k in value) - 0.01 * len(schema.get("required", []))
    return 0.0


def _flatten(schema: Any, value: Any = None) -> dict[str, Any]:
    schema = _resolve(schema)
    if "allOf" in schema:
        return _merge_all_of(schema)
    discriminator = schema.get("discriminator", {})
    chosen = value.get(discriminator.get("propertyName", "")) if isinstance(value, dict) else None
    if chosen in discriminator.get("mapping", {}):
        return _flatten({"$ref": discriminator["mapping"][chosen]}, value)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            options = [_flatten(option) for option in schema[key]]
            return max(options, key=lambda option: _score(option, value))
    return dict(schema)


def complete(schema: Any, value: Any = None, *, present: bool = False) -> Any:
    """``value`` with every required field it lacks filled with a type-correct default."""
    schema = _flatten(schema, value)
    if present and value is None and schema.get("nullable"):
        return None
    kind = schema.get("type")
    if kind == "object" or (kind is None and "properties" in schema):
        result = dict(value) if isinstance(value, dict) else {}
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name in result:
                result[name] = complete(sub, result[name], present=True)
            elif name in schema.get("required", []):
                result[name] = complete(sub)
        return result
    if kind == "array":
        items = value if isinstance(value, list) else []
        return [complete(schema.get("items", {}), item, present=True) for item in items]
    if present:
        return value
    if schema.get("nullable"):
        return None
    if "enum" in schema:
        return schema["enum"][0]
    return {
        "string": _DEFAULTS.get(schema.get("format", ""), ""),
        "integer": 0,
        "number": 0,
        "boolean": False,
    }.get(kind or "")
