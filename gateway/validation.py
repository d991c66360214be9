"""Input validation against a version's OpenAPI `Input` schema, reported as Replicate's `invalid_fields`.

Replicate validates with gojsonschema; the `type` names and message wording below follow it
(`required`, `number_lte`, `enum`, "Must be less than or equal to 4", ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from gateway.errors import InvalidInput
from gateway.ssrf import AddressPolicy, UrlGuard

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
_REQUIRED = re.compile(r"^'(?P<name>.+)' is a required property$")
_ADDITIONAL = re.compile(r"\('(?P<name>[^']+)'")


def _never(url: str) -> bool:
    return False


def _strict_guard() -> UrlGuard:
    return UrlGuard(AddressPolicy())


@dataclass(frozen=True)
class UrlPolicy:
    """Which file URLs may be handed to a model.

    `guard` decides on the address of every http(s) URL, in any field; `gateway_file` recognises the gateway's
    own file URLs: the gateway replaces those with URLs it makes itself before dispatch (whatever host they
    name), so they are safe whatever their address.
    """

    guard: UrlGuard = field(default_factory=_strict_guard)
    gateway_file: Callable[[str], bool] = _never


class InputValidator:
    """Checks prediction inputs against one OpenAPI document's `components.schemas.Input`.

    `validate` needs no I/O (the schema, file: URIs); `check_urls` then resolves the hosts of http(s) URLs.
    """

    def __init__(self, openapi_schema: dict[str, Any], policy: UrlPolicy | None = None) -> None:
        components = openapi_schema["components"]
        self._validator = Draft202012Validator({"$ref": "#/components/schemas/Input", "components": components})
        self._uri_fields = _uri_fields(components["schemas"]["Input"])
        self._policy = policy or UrlPolicy()

    def validate(self, given: dict[str, Any]) -> None:
        problems = [_describe(error) for error in self._validator.iter_errors(given)]
        problems += list(self._unsafe_files(given))
        if problems:
            raise InvalidInput(problems)

    async def check_urls(self, given: dict[str, Any]) -> None:
        """Refuse http(s) URLs anywhere in the input (any field, nested too) whose host the guard refuses."""
        found = [(name, url) for name, url in _strings(given) if _is_web_url(url) and not self._policy.gateway_file(url)]
        refusals = await self._policy.guard.refusals(url for _, url in found)
        problems = dict.fromkeys((name, reason) for name, url in found if (reason := refusals[url]))
        if problems:
            raise InvalidInput([_unsafe(name, reason) for name, reason in problems])

    def _unsafe_files(self, given: dict[str, Any]) -> Iterator[dict[str, str]]:
        for name, item in _strings(given):
            reason = unsafe_file_reason(item, uri_field=name in self._uri_fields, policy=self._policy)
            if reason:
                yield _unsafe(name, reason)


def unsafe_file_reason(value: str, *, uri_field: bool, policy: UrlPolicy) -> str | None:
    """Why a string may not be handed to a model as a file, or None when it may (before its address is checked)."""
    lowered = value.lower()
    if lowered.startswith("file:"):
        return "file: URIs are not accepted; upload the file or pass an https:// or data: URL"
    if not uri_field or lowered.startswith("data:") or policy.gateway_file(value):
        return None
    if not _is_web_url(value):
        return "Must be an https://, http:// or data: URL (local paths are not accepted)"
    return None


def _is_web_url(value: str) -> bool:
    # As loose as the fetchers: `http:/host`, `HTTP://`, leading blanks all count.
    return value.lstrip().lower().startswith(("http:", "https:"))


def _strings(given: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every string in the input with its top-level field name, however deeply nested."""
    for name, value in given.items():
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                yield name, item
            elif isinstance(item, list):
                stack.extend(reversed(item))
            elif isinstance(item, dict):
                stack.extend(reversed(list(item.values())))


def _unsafe(name: str, reason: str) -> dict[str, str]:
    return {"type": "unsafe_file", "field": f"input.{name}", "description": reason}


def _uri_fields(input_schema: dict[str, Any]) -> frozenset[str]:
    fields = set()
    for name, prop in input_schema.get("properties", {}).items():
        items = prop.get("items", {}) if prop.get("type") == "array" else prop
        if items.get("format") == "uri":
            fields.add(name)
    return frozenset(fields)


def _describe(error: ValidationError) -> dict[str, str]:
    field = ".".join(["input", *(str(p) for p in error.absolute_path)])
    kind, description = _wording(error)
    return {"type": kind, "field": field, "description": description}


def _wording(error: ValidationError) -> tuple[str, str]:
    keyword, limit = error.validator, error.validator_value
    if keyword == "required":
        match = _REQUIRED.match(error.message)
        return "required", f"{match['name'] if match else error.message} is required"
    if keyword == "type":
        return "invalid_type", f"Invalid type. Expected: {_type_names(limit)}, given: {_json_type(error.instance)}"
    if keyword == "enum" and isinstance(limit, list):
        allowed = ", ".join(json.dumps(v) for v in limit)
        return "enum", f"{_leaf(error)} must be one of the following: {allowed}"
    if keyword == "additionalProperties":
        match = _ADDITIONAL.search(error.message)
        return "additional_property_not_allowed", f"Additional property {match['name'] if match else ''} is not allowed"
    if keyword in _BOUNDS:
        kind, template = _BOUNDS[keyword]
        return kind, template.format(limit)
    return str(keyword), error.message


_BOUNDS = {
    "maximum": ("number_lte", "Must be less than or equal to {}"),
    "minimum": ("number_gte", "Must be greater than or equal to {}"),
    "exclusiveMaximum": ("number_lt", "Must be less than {}"),
    "exclusiveMinimum": ("number_gt", "Must be greater than {}"),
    "multipleOf": ("multiple_of", "Must be a multiple of {}"),
    "maxLength": ("string_lte", "String length must be less than or equal to {}"),
    "minLength": ("string_gte", "String length must be greater than or equal to {}"),
    "maxItems": ("array_max_items", "Array must have at most {} items"),
    "minItems": ("array_min_items", "Array must have at least {} items"),
    "pattern": ("pattern", "Does not match pattern '{}'"),
}


def _leaf(error: ValidationError) -> str:
    return str(error.absolute_path[-1]) if error.absolute_path else "input"


def _type_names(expected: object) -> str:
    return "/".join(map(str, expected)) if isinstance(expected, list) else str(expected)


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


MAX_INPUT_DEPTH = 32  # deeper input is no model's and would exhaust the stack of whatever walks it


def check_nesting(given: dict[str, Any]) -> None:
    """InvalidInput for each field whose value nests lists and objects deeper than MAX_INPUT_DEPTH."""
    problems = [
        {
            "type": "max_depth",
            "field": f"input.{name}",
            "description": f"Must not be nested more than {MAX_INPUT_DEPTH} levels deep",
        }
        for name, value in given.items()
        if _deeper_than(value, MAX_INPUT_DEPTH)
    ]
    if problems:
        raise InvalidInput(problems)


def _deeper_than(value: Any, depth: int) -> bool:
    """Iterative, so that the check itself never recurses."""
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children and level > depth:
            return True
        pending.extend((child, level + 1) for child in children)
    return False
