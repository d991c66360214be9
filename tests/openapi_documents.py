"""OpenAPI documents as test oracles: Replicate's own (read from the shared references beside the repository,
never copied here) and the gateway's, each turned into plain JSON Schema to validate response bodies with.

Replicate's document is OpenAPI 3.1 but marks null the 3.0 way: `nullable: true` is the only way it allows null,
so elsewhere null is refused and a key without a value yet must be left out.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from tests.conftest import ROOT

REPLICATE_DOCUMENT = ROOT.parent / "shared" / "reference" / "replicate-openapi.json"
_PARAMETER = re.compile(r"\{[^}]+\}")
_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "query"}
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")

FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    """RFC 3339, with a real date and time (jsonschema checks this format only with an optional package)."""
    if not isinstance(value, str):
        return True
    if not _TIME.match(value):
        return False
    datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    return True


@FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    """An absolute URL, as Replicate's `urls`, `next` and `previous` are."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


def shape(path: str) -> str:
    """A path with its parameters unnamed: `/models/{model_owner}/{model_name}` is `/models/{}/{}`."""
    return _PARAMETER.sub("{}", path)


def _json_schema(node: Any, document: dict[str, Any], depth: int = 0) -> Any:
    """`node` as plain JSON Schema: `$ref`s inlined, and `nullable: true` turned into an alternative of null."""
    assert depth < 50, "a cycle of $refs"
    if isinstance(node, list):
        return [_json_schema(item, document, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _json_schema(target, document, depth + 1)
    schema = {key: _json_schema(value, document, depth + 1) for key, value in node.items() if key != "nullable"}
    return {"anyOf": [schema, {"type": "null"}]} if node.get("nullable") is True else schema


class Document:
    """An OpenAPI document's operations by (METHOD, path shape), and the JSON schema of each response."""

    def __init__(self, name: str, document: dict[str, Any], prefix: str = "") -> None:
        self.name = name
        self._document = document
        self._paths = {
            (method.upper(), shape(path.removeprefix(prefix))): item[method]
            for path, item in document["paths"].items()
            if path.startswith(prefix)
            for method in item
            if method in _HTTP_METHODS
        }

    def operations(self) -> set[tuple[str, str]]:
        return set(self._paths)

    def errors(self, method: str, shape: str, response: httpx.Response) -> list[str]:
        """What is wrong with `response` to the operation, as the document describes it (no JSON body: none)."""
        where = f"{self.name}: {method} {shape} {response.status_code}"
        described = self._paths[(method, shape)]["responses"].get(str(response.status_code))
        if described is None and response.status_code >= 400:  # Replicate's document lists few errors: problem+json at least
            problem = response.headers.get("content-type") == "application/problem+json"
            return [] if problem else [f"{where}: an error as {response.headers.get('content-type')}"]
        if described is None:
            return [f"{where}: the document has no such status"]
        content = described.get("content", {}).get("application/json")
        if content is None:
            return []
        if response.headers.get("content-type") != "application/json":
            return [f"{where}: content type {response.headers.get('content-type')}"]
        return self.body_errors(where, content["schema"], response.json())

    def body_errors(self, where: str, schema: dict[str, Any], body: Any) -> list[str]:
        """What `schema` (a node of the document, e.g. a `$ref` to a component) finds wrong with `body`."""
        validator = Draft202012Validator(_json_schema(schema, self._document), format_checker=FORMATS)
        return [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def replicate_document() -> Document:
    """Replicate's document from the shared references; the test is skipped where they are not beside the repository."""
    if not REPLICATE_DOCUMENT.is_file():
        pytest.skip(f"Replicate's OpenAPI document is not at {REPLICATE_DOCUMENT} (the shared references beside the repository)")
    return Document("replicate", json.loads(REPLICATE_DOCUMENT.read_text()))
