"""A model's readme and examples from the catalog, and the refusal of model changes (the operator owns the catalog)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.api.models import visible_model
from gateway.api.requests import api_root, caller
from gateway.config import ModelConfig
from gateway.config_listing import ExampleConfig
from gateway.errors import Forbidden, NotFound
from gateway.timestamps import timestamp

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
    results = [_example_prediction(request, model, i, e) for i, e in enumerate(model.examples)]
    return JSONResponse({"next": None, "previous": None, "results": results})


async def refuse_change(request: Request) -> Response:
    """models.create, models.update, models.delete and models.versions.delete: a 403 for any valid key."""
    await caller(request, "read")
    raise Forbidden(MANAGED)


def example_id(model: ModelConfig, index: int) -> str:
    """A stable prediction-like id (26 lowercase base32 characters) for the model's example at `index`."""
    digest = hashlib.sha256(f"{model.name}#{index}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:26]


def _example_prediction(request: Request, model: ModelConfig, index: int, example: ExampleConfig) -> dict[str, Any]:
    """A succeeded prediction of the model's latest version, made at the version's creation time."""
    version = model.versions[0]
    url = f"{api_root(request)}/predictions/{example_id(model, index)}"
    made = timestamp(version.created_at.timestamp())
    return {
        "id": example_id(model, index),
        "model": model.name,
        "version": version.id,
        "input": example.input,
        "output": example.output,
        "logs": "",
        "error": None,
        "status": "succeeded",
        "source": "web",
        "data_removed": False,
        "created_at": made,
        "started_at": made,
        "completed_at": made,
        "metrics": {"predict_time": 0.0},
        "urls": {"get": url, "cancel": f"{url}/cancel", "web": url},
    }


routes = [
    Route("/models", refuse_change, methods=["POST"]),
    Route("/models/{owner}/{name}", refuse_change, methods=["PATCH"]),
    Route("/models/{owner}/{name}", refuse_change, methods=["DELETE"]),
    Route("/models/{owner}/{name}/versions/{version_id}", refuse_change, methods=["DELETE"]),
    Route("/models/{owner}/{name}/readme", get_readme, methods=["GET"]),
    Route("/models/{owner}/{name}/examples", list_examples, methods=["GET"]),
]
