"""Trainings in the gateway's OpenAPI document: the tenant's operations and their shapes, after Replicate's
`trainings.*` operations and `schemas_training_response` (keys without a value are left out)."""

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

_TIME: Json = {"type": "string", "format": "date-time"}
_URI: Json = {"type": "string", "format": "uri"}
_EVENTS: Json = {"type": "array", "items": {"enum": ["start", "output", "logs", "completed"]}}

SCHEMAS: Json = {
    "Training": object_schema(
        ["id", "model", "version", "input", "status", "created_at", "urls"],
        {
            "id": {"type": "string", "description": "The gateway's id (never the upstream's)"},
            "model": {"type": "string"},
            "version": {"type": "string"},
            "input": {"type": "object"},
            "logs": {"type": "string"},
            "error": {"type": ["string", "null"]},
            "status": {"enum": ["starting", "processing", "succeeded", "failed", "canceled", "aborted"]},
            "created_at": _TIME,
            "started_at": _TIME,
            "completed_at": _TIME,
            "source": {"enum": ["web", "api"]},
            "metrics": {"type": "object"},
            "output": object_schema(
                [],
                {
                    "version": {"type": "string", "description": "`<destination>:<new version id>`"},
                    "weights": {**_URI, "description": "A signed gateway link to the weights"},
                },
            ),
            "urls": object_schema(["get", "cancel"], {"get": _URI, "cancel": _URI}),
        },
    ),
    "TrainingPage": page("Training"),
    "TrainingCreate": object_schema(
        ["destination", "input"],
        {
            "destination": {"type": "string", "description": "`owner/name` (lowercase) the new version is named under"},
            "input": {"type": "object", "description": "The trainer's input"},
            "webhook": _URI,
            "webhook_events_filter": _EVENTS,
        },
        extra=False,
    ),
}


def tenant_paths() -> Json:
    """The training operations relative to an API prefix."""
    training_id = path_param("training_id")
    training = json_response("The training", ref("Training"))
    return {
        "/models/{owner}/{name}/versions/{version_id}/trainings": {
            "post": operation(
                "trainings.create",
                "Train a trainable catalog version; 422 for a version that cannot be trained or that the key may not use",
                TENANT,
                {"201": training, **problems(400, 401, 403, 404, 422)},
                parameters=[path_param("owner"), path_param("name"), path_param("version_id")],
                requestBody=json_body(ref("TrainingCreate")),
            ),
        },
        "/trainings": {
            "get": operation(
                "trainings.list",
                "The tenant's trainings, newest first",
                TENANT,
                {"200": json_response("A page of trainings", ref("TrainingPage")), **problems(400, 401, 403)},
                parameters=[query_param("cursor", {"type": "string"}, "Opaque; follow `next` and `previous` as given")],
            ),
        },
        "/trainings/{training_id}": {
            "get": operation(
                "trainings.get",
                "One of the tenant's trainings",
                TENANT,
                {"200": training, **problems(401, 403, 404)},
                parameters=[training_id],
            ),
        },
        "/trainings/{training_id}/cancel": {
            "post": operation(
                "trainings.cancel",
                "Cancel the training",
                TENANT,
                {"200": training, **problems(401, 403, 404)},
                parameters=[training_id],
            ),
        },
    }
