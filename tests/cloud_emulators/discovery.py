"""Google API discovery documents as routes and JSON Schemas.

The Compute Engine v1 discovery document ships inside google-api-python-client
(``googleapiclient/discovery_cache/documents/compute.v1.json``). Its methods give the
emulator its routes (``path`` templates, HTTP verbs, declared query parameters) and its
``schemas`` become JSON Schemas (draft 7) with ``additionalProperties: false``, so a
field that Compute Engine does not have fails the test, in a request or a response.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema


@cache
def document(name: str = "compute.v1") -> dict[str, Any]:
    """The discovery document that google-api-python-client ships."""
    path = resources.files("googleapiclient").joinpath(f"discovery_cache/documents/{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _convert(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"$ref": f"#/definitions/{schema['$ref']}"}
    kind = schema.get("type")
    out: dict[str, Any] = {}
    if kind == "object":
        out["type"] = "object"
        if "properties" in schema:
            out["properties"] = {k: _convert(v) for k, v in schema["properties"].items()}
            out["additionalProperties"] = False
        if "additionalProperties" in schema:
            out["additionalProperties"] = _convert(schema["additionalProperties"])
    elif kind == "array":
        out = {"type": "array", "items": _convert(schema.get("items", {}))}
    elif kind == "string":
        out = {"type": "string"}  # int64 and uint64 travel as strings in JSON
        if "enum" in schema:
            out["enum"] = schema["enum"]
    elif kind in {"integer", "number", "boolean"}:
        out = {"type": kind}
    return out  # "any" and untyped: anything


@cache
def _definitions(name: str) -> dict[str, Any]:
    return {key: _convert(value) for key, value in document(name)["schemas"].items()}


def validate(schema_name: str, body: Any, name: str = "compute.v1") -> list[str]:
    """Errors of ``body`` against the discovery schema ``schema_name`` (empty: valid)."""
    schema = {"$ref": f"#/definitions/{schema_name}", "definitions": _definitions(name)}
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{schema_name} at /{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(body)
    ]


@dataclass(frozen=True)
class Method:
    """One API method: ``compute.instances.insert`` and what it takes and returns."""

    id: str
    http_method: str
    pattern: re.Pattern[str]
    parameters: frozenset[str]
    request: str | None
    response: str | None


def _methods(resources_: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for resource in resources_.values():
        found += list(resource.get("methods", {}).values())
        found += _methods(resource.get("resources", {}))
    return found


@cache
def methods(name: str = "compute.v1") -> tuple[Method, ...]:
    """Every method of the API, longest path template first (most specific wins)."""
    doc = document(name)
    found = []
    for method in _methods(doc["resources"]):
        template = method.get("flatPath") or method["path"]
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        found.append(
            Method(
                id=method["id"],
                http_method=method["httpMethod"],
                pattern=re.compile(re.escape(doc["servicePath"]) + regex),
                parameters=frozenset(method.get("parameters", {}))
                | frozenset(doc.get("parameters", {})),
                request=method.get("request", {}).get("$ref"),
                response=method.get("response", {}).get("$ref"),
            )
        )
    return tuple(sorted(found, key=lambda m: -len(m.pattern.pattern)))


def route(http_method: str, path: str, name: str = "compute.v1") -> tuple[Method, dict[str, str]]:
    """The method serving ``http_method path`` and its path parameters.

    Raises:
        LookupError: the API has no such method.
    """
    for method in methods(name):
        if method.http_method != http_method:
            continue
        match = method.pattern.fullmatch(path.lstrip("/"))
        if match:
            return method, match.groupdict()
    raise LookupError(f"no {name} method for {http_method} {path}")
