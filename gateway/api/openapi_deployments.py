"""Deployments in the gateway's OpenAPI document: the tenant's operations and their shapes, after Replicate's
`deployments.*` operations and `schemas_deployment_response` (the creating prediction is in `openapi`)."""

from __future__ import annotations

from gateway.api.openapi_parts import (
    TENANT,
    Json,
    json_body,
    json_response,
    object_schema,
    operation,
    page,
    path_param,
    problems,
    query_param,
    ref,
)

_STRING: Json = {"type": "string", "minLength": 1}
_SETTINGS: Json = {
    "version": {**_STRING, "description": "The 64-character id of a catalog version of the model the key may use"},
    "hardware": {**_STRING, "description": "The hardware SKU (recorded and shown; the catalog's routes run the model)"},
    "min_instances": {"type": "integer", "minimum": 0, "maximum": 5},
    "max_instances": {"type": "integer", "minimum": 0, "maximum": 20},
    "input_defaults": {
        "type": "object",
        "description": "The gateway's addition: inputs filled in for each prediction through the deployment, "
        "under the prediction's own input",
    },
}
_CONFIGURATION: Json = object_schema(
    ["hardware", "min_instances", "max_instances"],
    {
        "hardware": {"type": "string"},
        "min_instances": {"type": "integer"},
        "max_instances": {"type": "integer"},
        "input_defaults": {"type": "object"},
    },
)
_RELEASE: Json = object_schema(
    ["number", "model", "version", "created_at", "created_by", "configuration"],
    {
        "number": {"type": "integer", "minimum": 1, "description": "Incremented by every change"},
        "model": {"type": "string"},
        "version": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "created_by": object_schema(
            ["type", "username"],
            {"type": {"enum": ["organization", "user"]}, "username": {"type": "string"}, "name": {"type": "string"}},
        ),
        "configuration": _CONFIGURATION,
    },
)

SCHEMAS: Json = {
    "Deployment": object_schema(
        ["owner", "name", "current_release"],
        {"owner": {"type": "string"}, "name": {"type": "string"}, "current_release": _RELEASE},
    ),
    "DeploymentPage": page("Deployment"),
    "DeploymentCreate": object_schema(
        ["name", "model", "version", "hardware", "min_instances", "max_instances"],
        {
            "name": {
                **_STRING,
                "description": "Lowercase letters, digits, `-`, `_` and `.`; optionally prefixed with the tenant as owner",
            },
            "model": {**_STRING, "description": "The catalog model, `owner/name`"},
            **_SETTINGS,
        },
        extra=False,
    ),
    "DeploymentUpdate": object_schema([], _SETTINGS, extra=False),
}


def tenant_paths() -> Json:
    """The deployment operations relative to an API prefix."""
    owner, name = path_param("owner"), path_param("name")
    deployment = json_response("The deployment", ref("Deployment"))
    return {
        "/deployments": {
            "post": operation(
                "deployments.create",
                "Create a deployment of the tenant's own, pinning a catalog version (release 1)",
                TENANT,
                {"200": deployment, **problems(400, 401, 403, 422)},
                requestBody=json_body(ref("DeploymentCreate")),
            ),
            "get": operation(
                "deployments.list",
                "The tenant's deployments, newest first; the first page also lists the catalog's the key may use",
                TENANT,
                {"200": json_response("A page of deployments", ref("DeploymentPage")), **problems(400, 401, 403)},
                parameters=[query_param("cursor", {"type": "string"}, "Opaque; follow `next` and `previous` as given")],
            ),
        },
        "/deployments/{owner}/{name}": {
            "get": operation(
                "deployments.get",
                "One deployment: the tenant's own or the catalog's",
                TENANT,
                {"200": deployment, **problems(401, 403, 404)},
                parameters=[owner, name],
            ),
            "patch": operation(
                "deployments.update",
                "Change the tenant's deployment: a new release (the catalog's are the operator's: 403)",
                TENANT,
                {"200": deployment, **problems(400, 401, 403, 404, 409, 422)},
                parameters=[owner, name],
                requestBody=json_body(ref("DeploymentUpdate"), required=False),
            ),
            "delete": operation(
                "deployments.delete",
                "Delete the tenant's deployment (the catalog's are the operator's: 403)",
                TENANT,
                {"204": {"description": "Deleted"}, **problems(401, 403, 404)},
                parameters=[owner, name],
            ),
        },
    }
