"""OpenAI-compatible image endpoints: `POST /images/generations` (JSON) and `POST /images/edits` (multipart).

Each runs one prediction of the catalog model the operator chose (`[openai.images]`), authenticated, limited
and metered as any create, and answers `{"created", "data": [{"url"} | {"b64_json"}]}`, one item per output.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.body_limit import PathLimit
from gateway.api.files import MULTIPART_ALLOWANCE
from gateway.api.openai_errors import OpenAIError, answered
from gateway.api.predictions import prediction_json
from gateway.api.requests import api_root, caller, json_object, services
from gateway.api.responses import JSONResponse
from gateway.files import DEFAULT_CONTENT_TYPE, Upload, too_large_detail
from gateway.keys import KeyRecord
from gateway.openai_images import ImageRequest, Operation, outputs_of
from gateway.store import StoredFile, StoredPrediction

MAX_IMAGES = 10  # OpenAI's own bound on `n`
MAX_SIDE = 4096
RESPONSE_FORMATS = ("url", "b64_json")
_SIZE = re.compile(r"([1-9][0-9]{0,3})x([1-9][0-9]{0,3})")
_COMMON_FIELDS = frozenset({"prompt", "n", "size", "response_format", "model", "user"})
_EDIT_FILES = ("image", "mask")


async def create_generation(request: Request) -> Response:
    return await answered(request, _generation)


async def create_edit(request: Request) -> Response:
    return await answered(request, _edit)


async def _generation(request: Request) -> Response:
    key = await caller(request, "predict", counted=False)
    body = await json_object(request)
    image_request, response_format = _parsed(Operation.GENERATIONS, body, {})
    return await _run(request, key, image_request, response_format)


async def _edit(request: Request) -> Response:
    key = await caller(request, "predict", counted=False)
    async with request.form(max_files=4, max_fields=16) as form:
        fields, files = _form_parts(form)
        image_request, response_format = _parsed(Operation.EDITS, fields, files)
        return await _run(request, key, image_request, response_format)


async def _run(request: Request, key: KeyRecord, image_request: ImageRequest, response_format: str) -> Response:
    gateway = services(request)
    root = api_root(request)

    def file_url(file: StoredFile) -> str:
        return f"{root}/files/{file.id}"

    record = await gateway.images.run(key, image_request, file_url, request.is_disconnected)
    return JSONResponse({"created": record.created_ms // 1000, "data": await _data(request, record, response_format)})


async def _data(request: Request, record: StoredPrediction, response_format: str) -> list[dict[str, str]]:
    if response_format == "url":
        return [{"url": url} for url in outputs_of(prediction_json(record, request)["output"])]
    images = await services(request).images.read_outputs(record)
    return [{"b64_json": base64.b64encode(image).decode()} for image in images]


def _parsed(operation: Operation, fields: dict[str, Any], files: dict[str, Upload]) -> tuple[ImageRequest, str]:
    """The request's fields checked as OpenAI checks them (400 naming the field), and its response format."""
    for name in fields:
        if name not in _COMMON_FIELDS:
            raise OpenAIError(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")
    for name in _EDIT_FILES if operation is Operation.EDITS else ():
        if name not in files:
            raise OpenAIError(f"'{name}' is a required file", name, "missing_required_parameter")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise OpenAIError("'prompt' is a required string", "prompt", "missing_required_parameter")
    response_format = _optional_text(fields, "response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise OpenAIError(f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)}", "response_format", "invalid_value")
    model = _optional_text(fields, "model")
    _optional_text(fields, "user")
    image_request = ImageRequest(
        operation, prompt, _count(fields.get("n")), _size(_optional_text(fields, "size")), model,
        files.get("image"), files.get("mask"),
    )  # fmt: skip
    return image_request, response_format


def _optional_text(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise OpenAIError(f"'{name}' must be a string", name, "invalid_type")
    return value


def _count(value: Any) -> int:
    """`n`: an integer from 1 to MAX_IMAGES (a form field carries it as text)."""
    if value is None:
        return 1
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_IMAGES:
        raise OpenAIError(f"'n' must be an integer from 1 to {MAX_IMAGES}", "n", "invalid_value")
    return value


def _size(value: str | None) -> tuple[int, int] | None:
    """`size` as (width, height): `WIDTHxHEIGHT` up to MAX_SIDE pixels a side; `auto` or none: the model's default."""
    if value is None or value == "auto":
        return None
    match = _SIZE.fullmatch(value)
    if match is None or max(int(match[1]), int(match[2])) > MAX_SIDE:
        raise OpenAIError(f"'size' must be WIDTHxHEIGHT in pixels (at most {MAX_SIDE}) or auto", "size", "invalid_value")
    return int(match[1]), int(match[2])


def _form_parts(form: FormData) -> tuple[dict[str, Any], dict[str, Upload]]:
    """A multipart body's text fields and its image files (`image[]`, a list of one, counts as `image`)."""
    fields: dict[str, Any] = {}
    files: dict[str, Upload] = {}
    for name, value in form.multi_items():
        name = name.removesuffix("[]")
        if isinstance(value, UploadFile) and name in _EDIT_FILES:
            files.setdefault(name, Upload(value.file, value.filename or name, value.content_type or DEFAULT_CONTENT_TYPE))
        elif isinstance(value, UploadFile) or name in _EDIT_FILES:
            raise OpenAIError(f"'{name}' must be {'a file' if name in _EDIT_FILES else 'a text field'}", name, "invalid_type")
        else:
            fields.setdefault(name, value)
    return fields, files


def body_limits(api_prefixes: Sequence[str], file_max_bytes: int) -> list[PathLimit]:
    """An edit carries two files: room for both and the multipart envelope."""
    limit = 2 * file_max_bytes + MULTIPART_ALLOWANCE
    return [PathLimit(f"{prefix}/images/edits", limit, too_large_detail(file_max_bytes)) for prefix in api_prefixes]


routes = [
    Route("/images/generations", create_generation, methods=["POST"]),
    Route("/images/edits", create_edit, methods=["POST"]),
]
