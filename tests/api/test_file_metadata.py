"""`POST /v1/files` takes `metadata` in each form a client sends it: a JSON form field (the Python client), a JSON
part (the JavaScript client's Blob), or bracketed form fields (Stainless-generated clients), over real multipart
requests; and the file comes back with it on both API prefixes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway.api.app import API_PREFIXES
from tests.conftest import Gateway

CONTENT = ("notes.txt", b"hello", "text/plain")
METADATA = {"purpose": "mask", "n": "1", "tags": ["a", "b"], "limits": {"size": "2", "unit": "px"}}
BRACKETED = {
    "metadata[purpose]": "mask",
    "metadata[n]": "1",
    "metadata[tags][]": ["a", "b"],
    "metadata[limits][size]": "2",
    "metadata[limits][unit]": "px",
}
FORMS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "json field": ({"content": CONTENT}, {"metadata": json.dumps(METADATA)}),
    "json part": ({"content": CONTENT, "metadata": ("blob", json.dumps(METADATA).encode(), "application/json")}, {}),
    "bracketed fields": ({"content": CONTENT}, BRACKETED),
}


@pytest.mark.parametrize("prefix", API_PREFIXES)
@pytest.mark.parametrize("form", list(FORMS))
def test_metadata_arrives_in_each_form_a_client_sends(gateway: Gateway, tenant_key: str, prefix: str, form: str) -> None:
    files, data = FORMS[form]
    with gateway.client(tenant_key, prefix) as api:
        created = api.post("/files", files=files, data=data)
        assert created.status_code == 201, created.text
        assert created.json()["metadata"] == METADATA
        assert created.json()["urls"]["get"] == f"{gateway.url}{prefix}/files/{created.json()['id']}"
        assert api.get(created.json()["urls"]["get"]).json() == created.json()


def test_many_bracketed_fields_fit(api: httpx.Client) -> None:
    fields = {f"metadata[k{n}]": str(n) for n in range(200)}
    created = api.post("/files", files={"content": CONTENT}, data=fields)
    assert created.status_code == 201, created.text
    assert created.json()["metadata"] == {f"k{n}": str(n) for n in range(200)}


@pytest.mark.parametrize(
    ("data", "description"),
    [
        ({"metadata": "{}", "metadata[a]": "1"}, "Send metadata either as one JSON object or as metadata[key] fields, not both"),
        ({"metadata[a]": "1", "metadata[a][b]": "2"}, "a is given both as a value and as an object or a list"),
        ({"metadata[a]": ["1", "2"]}, "a is given more than once"),
        ({"metadata[]": "x"}, "[] names an item of an object, whose items are named [key]"),
    ],
)
def test_bracketed_fields_that_make_no_object_are_422_naming_metadata(
    api: httpx.Client, data: dict[str, Any], description: str
) -> None:
    response = api.post("/files", files={"content": CONTENT}, data=data)
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["invalid_fields"] == [{"type": "invalid_type", "field": "metadata", "description": description}]
