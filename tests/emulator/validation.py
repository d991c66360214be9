"""Request and input validation with Replicate's `invalid_fields` wording (gojsonschema style)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Issue = dict[str, str]
ROOT = "(root)"
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def issue(kind: str, field: str, description: str) -> Issue:
    """One entry of a 422 body's `invalid_fields`."""
    return {"type": kind, "field": field, "description": description}


def issues_detail(issues: Iterable[Issue]) -> str:
    """The `detail` text: one `- field: description` line per issue (no field for the root)."""
    lines = []
    for entry in issues:
        prefix = "" if entry["field"] == ROOT else f"{entry['field']}: "
        lines.append(f"- {prefix}{entry['description']}\n")
    return "".join(lines)


def body_issues(body: dict[str, Any], allowed: frozenset[str], required: Iterable[str]) -> list[Issue]:
    """Problems with a create request body: missing or unknown fields, a non-object input."""
    found = [issue("required", ROOT, f"{name} is required") for name in required if name not in body]
    found += [
        issue("additional_property_not_allowed", ROOT, f"Additional property {name} is not allowed")
        for name in body
        if name not in allowed
    ]
    if "input" in body and not isinstance(body["input"], dict):
        given = _json_type(body["input"])
        found.append(issue("invalid_type", "input", f"Invalid type. Expected: object, given: {given}"))
    return found


def input_issues(openapi_schema: dict[str, Any], inputs: dict[str, Any]) -> list[Issue]:
    """Check inputs against the version's `Input` schema: required, type, enum, minimum, maximum."""
    schemas = openapi_schema.get("components", {}).get("schemas", {})
    spec = schemas.get("Input", {})
    properties = spec.get("properties", {})
    missing = [name for name in spec.get("required", []) if name not in inputs]
    found = [issue("required", "input", f"{name} is required") for name in missing]
    for name, value in inputs.items():
        if name in properties:
            found += _value_issues(f"input.{name}", _resolve(properties[name], schemas), value)
    return found


def _resolve(prop: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Merge cog's `allOf: [{$ref: ...}]` enum references into the property."""
    merged = {key: value for key, value in prop.items() if key != "allOf"}
    for part in prop.get("allOf", []):
        ref = part.get("$ref", "")
        merged.update(schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else part)
    return merged


def _value_issues(field: str, prop: dict[str, Any], value: Any) -> list[Issue]:
    expected = prop.get("type")
    if expected in JSON_TYPES and not _has_type(value, expected):
        return [issue("invalid_type", field, f"Invalid type. Expected: {expected}, given: {_json_type(value)}")]
    if "enum" in prop and value not in prop["enum"]:
        allowed = ", ".join(f'"{choice}"' for choice in prop["enum"])
        return [issue("enum", field, f"{field} must be one of the following: {allowed}")]
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "maximum" in prop and value > prop["maximum"]:
            return [issue("number_lte", field, f"Must be less than or equal to {prop['maximum']}")]
        if "minimum" in prop and value < prop["minimum"]:
            return [issue("number_gte", field, f"Must be greater than or equal to {prop['minimum']}")]
    return []


def _has_type(value: Any, expected: str) -> bool:
    if isinstance(value, bool):
        return expected == "boolean"
    if expected == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, JSON_TYPES[expected])


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if _has_type(value, name):
            return name
    return type(value).__name__
