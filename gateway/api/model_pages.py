"""A model's readme and examples from the catalog, and the refusal of model changes (the operator owns the catalog)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.api.examples import example_predictions
from gateway.api.models import visible_model
from gateway.api.requests import caller
from gateway.api.responses import JSONResponse
from gateway.errors import Forbidden, NotFound

MANAGED = (
    "The model catalog is managed by the gateway's operator: "
    "models and versions cannot be created, changed or deleted through the API"
)


async def get_readme(request: Request) -> Response:
    """The readme as Replicate serves it: markdown, as text/plain."""
    model = visible_model(await caller(request, "read"), request)
    if model.readme is None:
        raise NotFound(f"Model {model.name} has no README")
    return PlainTextResponse(model.readme)


async def list_examples(request: Request) -> Response:
    model = visible_model(await caller(request, "read"), request)
    return JSONResponse({"next": None, "previous": None, "results": example_predictions(request, model)})


async def refuse_change(request: Request) -> Response:
    """models.create, models.update, models.delete and models.versions.delete: a 403 for any valid key."""
    await caller(request, "read")
    raise Forbidden(MANAGED)


routes = [
    Route("/models", refuse_change, methods=["POST"]),
    Route("/models/{owner}/{name}", refuse_change, methods=["PATCH"]),
    Route("/models/{owner}/{name}", refuse_change, methods=["DELETE"]),
    Route("/models/{owner}/{name}/versions/{version_id}", refuse_change, methods=["DELETE"]),
    Route("/models/{owner}/{name}/readme", get_readme, methods=["GET"]),
    Route("/models/{owner}/{name}/examples", list_examples, methods=["GET"]),
]
