"""The catalog's read-only views and refused model changes in the gateway's OpenAPI document: collections,
hardware, search, the models query, readmes and examples, with shapes from Replicate's own document."""

from __future__ import annotations

from gateway.api.openapi_parts import (
    TENANT,
    Json,
    json_response,
    nullable,
    object_schema,
    operation,
    path_param,
    problems,
    query_param,
    ref,
)

_STRING: Json = {"type": "string"}
_STRINGS: Json = {"type": "array", "items": _STRING}
_COLLECTION_ITEM: Json = {"name": _STRING, "slug": _STRING, "description": _STRING}
_SEARCH_MODEL: Json = object_schema(
    ["model", "metadata"],
    {
        "model": ref("Model"),
        "metadata": object_schema(
            [],
            {
                "generated_description": nullable(_STRING),
                "tags": _STRINGS,
                "score": nullable({"type": "number", "description": "The mean weight of the query's terms"}),
            },
        ),
    },
)

SCHEMAS: Json = {
    "CollectionListItem": object_schema(["name", "slug", "description"], _COLLECTION_ITEM),
    "CollectionPage": object_schema(
        ["next", "previous", "results"],
        {
            "next": nullable(_STRING),
            "previous": nullable(_STRING),
            "results": {"type": "array", "items": ref("CollectionListItem")},
        },
    ),
    "Collection": object_schema(
        ["name", "slug", "description", "models"],
        {**_COLLECTION_ITEM, "full_description": nullable(_STRING), "models": {"type": "array", "items": ref("Model")}},
    ),
    "Hardware": {"type": "array", "items": object_schema(["name", "sku"], {"name": _STRING, "sku": _STRING})},
    "SearchResults": object_schema(
        ["query", "models", "collections", "pages"],
        {
            "query": _STRING,
            "models": {"type": "array", "items": _SEARCH_MODEL},
            "collections": {
                "type": "array",
                "items": object_schema(["name", "slug", "description"], {**_COLLECTION_ITEM, "models": nullable(_STRINGS)}),
            },
            "pages": {"type": "array", "items": object_schema(["name", "href"], {"name": _STRING, "href": _STRING})},
        },
    ),
}

_README = {"description": "The model's README (markdown)", "content": {"text/plain": {"schema": _STRING}}}
_MANAGED = "Refused with 403: the catalog is managed by the gateway's operator"


def tenant_paths() -> Json:
    """The operations relative to an API prefix; `/models…` items are merged with the models' own."""
    owner, name = path_param("owner"), path_param("name")
    return {
        "/collections": {"get": _read("collections.list", "The catalog's collections", "CollectionPage")},
        "/collections/{slug}": {
            "get": _read("collections.get", "A collection with the models the key may list", "Collection", path_param("slug"))
        },
        "/hardware": {"get": _read("hardware.list", "The hardware the catalog's providers offer, one entry per SKU", "Hardware")},
        "/search": {
            "get": operation(
                "search",
                "Models (scored by term matches) and collections matching the query; no documentation pages",
                TENANT,
                {"200": json_response("The results", ref("SearchResults")), **problems(400, 401, 403)},
                parameters=[
                    {**query_param("query", _STRING, "Whitespace-separated terms, matched case-insensitively"), "required": True},
                    query_param(
                        "limit", {"type": "integer", "minimum": 1, "maximum": 50, "default": 20}, "Most results of each kind"
                    ),
                ],
            )
        },
        "/models": {
            "query": operation(
                "models.search",
                "The models the key may list that match the plain-text query, best first",
                TENANT,
                {"200": json_response("Models", ref("ModelPage")), **problems(400, 401, 403)},
                requestBody={"required": True, "content": {"text/plain": {"schema": _STRING}}},
            ),
            "post": _refused("models.create"),
        },
        "/models/{owner}/{name}": {
            "patch": _refused("models.update", owner, name),
            "delete": _refused("models.delete", owner, name),
        },
        "/models/{owner}/{name}/versions/{version_id}": {
            "delete": _refused("models.versions.delete", owner, name, path_param("version_id"))
        },
        "/models/{owner}/{name}/readme": {
            "get": operation(
                "models.readme.get",
                "The model's README",
                TENANT,
                {"200": _README, **problems(401, 403, 404)},
                parameters=[owner, name],
            )
        },
        "/models/{owner}/{name}/examples": {
            "get": _read("models.examples.list", "The model's examples as succeeded predictions", "PredictionPage", owner, name)
        },
    }


def _read(operation_id: str, summary: str, schema: str, *parameters: Json) -> Json:
    missing = (404,) if parameters else ()
    responses = {"200": json_response(summary, ref(schema)), **problems(401, 403, *missing)}
    return operation(operation_id, summary, TENANT, responses, **({"parameters": list(parameters)} if parameters else {}))


def _refused(operation_id: str, *parameters: Json) -> Json:
    # A path whose parameters no route accepts (a decoded "/" in a name) is the router's 404.
    unroutable = (404,) if parameters else ()
    extra = {"parameters": list(parameters)} if parameters else {}
    return operation(operation_id, _MANAGED, TENANT, problems(401, 403, *unroutable), **extra)
