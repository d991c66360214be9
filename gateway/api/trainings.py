"""Training endpoints: create on a model version, get, list, cancel (the tenant's own trainings only)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.requests import api_root, caller, json_object, reader, services
from gateway.api.responses import JSONResponse
from gateway.errors import InvalidInput
from gateway.predictions import TrainingOptions
from gateway.providers.base import WEBHOOK_EVENTS
from gateway.store import TRAINING

# Each field's JSON type, as Replicate's document gives them (additionalProperties: false).
_FIELDS: dict[str, tuple[type, str]] = {
    "destination": (str, "string"),
    "input": (dict, "object"),
    "webhook": (str, "string"),
    "webhook_events_filter": (list, "array"),
}
_REQUIRED = ("destination", "input")


async def create_training(request: Request) -> Response:
    key = await caller(request, "predict", counted=False)
    options = _options(await json_object(request))
    params = request.path_params
    model = f"{params['owner']}/{params['name']}"
    record = await services(request).trainings.create(key, model, params["version_id"], options)
    doc = services(request).links.training(record, api_root(request))
    return JSONResponse(doc, status_code=201, headers={"Location": doc["urls"]["get"]})


async def get_training(request: Request) -> Response:
    key, count = await reader(request)
    record = await services(request).predictions.get(key, request.path_params["training_id"], TRAINING, count)
    return JSONResponse(services(request).links.training(record, api_root(request)))


async def cancel_training(request: Request) -> Response:
    key = await caller(request, "predict")
    record = await services(request).predictions.cancel(key, request.path_params["training_id"], TRAINING)
    return JSONResponse(services(request).links.training(record, api_root(request)))


async def list_trainings(request: Request) -> Response:
    """The tenant's trainings, newest first, paginated like predictions."""
    key = await caller(request, "read")
    page = await services(request).predictions.list(key, request.query_params.get("cursor"), None, None, TRAINING)
    root, links = api_root(request), services(request).links
    return JSONResponse(
        {
            "next": _page_url(root, page.next_cursor),
            "previous": _page_url(root, page.previous_cursor),
            "results": [links.training(record, root) for record in page.predictions],
        }
    )


def _options(body: dict[str, Any]) -> TrainingOptions:
    problems = [_problem("required", "(root)", f"{name} is required") for name in _REQUIRED if name not in body]
    for name, value in body.items():
        if name not in _FIELDS:
            problems.append(_problem("additional_property_not_allowed", "(root)", f"Additional property {name} is not allowed"))
        elif (value is not None or name in _REQUIRED) and not isinstance(value, _FIELDS[name][0]):
            problems.append(_problem("invalid_type", name, f"Invalid type. Expected: {_FIELDS[name][1]}"))
    events = body.get("webhook_events_filter")
    if isinstance(events, list) and not all(event in WEBHOOK_EVENTS for event in events):
        problems.append(_problem("enum", "webhook_events_filter", "webhook_events_filter has an unknown event"))
    webhook = body.get("webhook")
    if isinstance(webhook, str) and webhook and not webhook.startswith(("https://", "http://")):
        problems.append(_problem("format", "webhook", "Does not match format 'uri'"))
    if problems:
        raise InvalidInput(problems)
    return TrainingOptions(body["destination"], body["input"], webhook or None, events or None)


def _problem(kind: str, field: str, description: str) -> dict[str, str]:
    return {"type": kind, "field": field, "description": description}


def _page_url(root: str, cursor: str | None) -> str | None:
    return None if cursor is None else f"{root}/trainings?{urlencode({'cursor': cursor})}"


routes = [
    Route("/models/{owner}/{name}/versions/{version_id}/trainings", create_training, methods=["POST"]),
    Route("/trainings", list_trainings, methods=["GET"]),
    Route("/trainings/{training_id}", get_training, methods=["GET"]),
    Route("/trainings/{training_id}/cancel", cancel_training, methods=["POST"]),
]
