"""A model's catalog examples shown as Replicate prediction objects (its examples list and `default_example`)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from starlette.requests import Request

from gateway.api.requests import api_root
from gateway.config import ModelConfig
from gateway.config_listing import ExampleConfig
from gateway.timestamps import timestamp


def example_predictions(request: Request, model: ModelConfig) -> list[dict[str, Any]]:
    """Every example of the model, in catalog order."""
    return [_example_prediction(request, model, i, e) for i, e in enumerate(model.examples)]


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
