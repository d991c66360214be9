"""File endpoints: upload (multipart), get, list, delete, download; and the PUT endpoint Cog servers upload outputs to."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.api.body_limit import PathLimit
from gateway.api.brackets import BracketError, bracketed
from gateway.api.requests import api_root, caller, origin, parse_json, services
from gateway.api.responses import JSONResponse
from gateway.errors import BadRequest, InvalidInput
from gateway.files import DEFAULT_CONTENT_TYPE, Upload, too_large_detail
from gateway.store import StoredFile
from gateway.timestamps import timestamp

MULTIPART_ALLOWANCE = 1024 * 1024  # room for the multipart envelope and form fields around the file itself
METADATA_MAX_BYTES = 1024 * 1024
# `metadata[key]` fields each count: room for a generated client's object, within the body limit either way.
MAX_FORM_FIELDS = 1000
_SPOOL_BYTES = 1024 * 1024


def file_json(file: StoredFile, root: str) -> dict[str, Any]:
    """The public file object, with `urls.get` on the API prefix the request came in on."""
    return {
        "id": file.id,
        "name": file.name,
        "content_type": file.content_type,
        "size": file.size,
        "etag": file.md5,
        "checksums": {"sha256": file.sha256, "md5": file.md5},
        "metadata": file.metadata,
        "created_at": timestamp(file.created_ms / 1000),
        "expires_at": timestamp(file.expires_ms / 1000),
        "urls": {"get": f"{root}/files/{file.id}"},
    }


def body_limits(api_prefixes: Sequence[str], file_max_bytes: int) -> list[PathLimit]:
    """The upload endpoints' body limit (the file limit plus the multipart envelope), in Replicate's wording."""
    limit, detail = file_max_bytes + MULTIPART_ALLOWANCE, too_large_detail(file_max_bytes)
    return [*(PathLimit(f"{prefix}/files", limit, detail) for prefix in api_prefixes), PathLimit("/uploads/", limit, detail)]


async def create_file(request: Request) -> Response:
    key = await caller(request, "predict")
    async with request.form(max_files=2, max_fields=MAX_FORM_FIELDS) as form:
        file = await services(request).files.create(key.tenant, await _upload(form))
    return JSONResponse(file_json(file, api_root(request)), status_code=201)


async def list_files(request: Request) -> Response:
    key = await caller(request, "read")
    page = await services(request).files.list(key.tenant, request.query_params.get("cursor"))
    root = api_root(request)
    return JSONResponse(
        {
            "next": _page_url(root, page.next_cursor),
            "previous": _page_url(root, page.previous_cursor),
            "results": [file_json(f, root) for f in page.files],
        }
    )


async def get_file(request: Request) -> Response:
    key = await caller(request, "read")
    file = await services(request).files.get(key.tenant, request.path_params["file_id"])
    return JSONResponse(file_json(file, api_root(request)))


async def delete_file(request: Request) -> Response:
    key = await caller(request, "predict")
    await services(request).files.delete(key.tenant, request.path_params["file_id"])
    return Response(status_code=204)


async def download_file(request: Request) -> Response:
    """With a signature the URL itself is the credential and any Authorization header is ignored; else the owner's key."""
    files, params, query = services(request).files, request.path_params, request.query_params
    if "signature" in params:
        file = await files.signed(params["file_id"], params["expiry"], params["signature"])
    elif "signature" in query:
        file = await files.signed(params["file_id"], query.get("expiry", ""), query["signature"], owner=query.get("owner", ""))
    else:
        file = await files.get((await caller(request, "read")).tenant, params["file_id"])
    headers = {
        "content-type": file.content_type,
        "content-length": str(file.size),
        "etag": f'"{file.md5}"',
        "content-disposition": f"inline; filename*=UTF-8''{quote(file.name, safe='')}",
        # Tenants choose the content type: never let a browser run an uploaded page on the gateway's origin.
        "x-content-type-options": "nosniff",
        "content-security-policy": "sandbox",
    }
    return StreamingResponse(await files.open(file), headers=headers)


async def upload_output(request: Request) -> Response:
    """`PUT /uploads/{token}/{filename}` from a Cog server; answers 201 with the file's signed URL in `Location`."""
    files, token = services(request).files, request.path_params["token"]
    files.check_upload_token(token)
    prediction_id = request.headers.get("x-prediction-id")
    if not prediction_id:
        raise BadRequest("The x-prediction-id header is required")
    name = request.path_params["filename"].rsplit("/", 1)[-1] or "output"
    content_type = request.headers.get("content-type") or DEFAULT_CONTENT_TYPE
    with await _spooled_body(request) as body:
        file = await files.store_output(token, prediction_id, Upload(body, name, content_type))
    return Response(status_code=201, headers={"Location": services(request).links.file_download(file, origin(request))})


async def _upload(form: FormData) -> Upload:
    content = form.get("content")
    if not isinstance(content, UploadFile):
        description = "content is required: send the file as a multipart/form-data part named content"
        raise InvalidInput([{"type": "required", "field": "content", "description": description}], title="Invalid request body")
    name = _text(form.get("filename")) or content.filename or "file"
    content_type = _content_type(content.content_type, _text(form.get("type")))
    return Upload(content.file, name, content_type, await _metadata(form))


def _text(value: str | UploadFile | None) -> str | None:
    return value if isinstance(value, str) and value else None


def _content_type(part_type: str | None, declared: str | None) -> str:
    """The part's own type wins, unless it is only the generic default and a `type` field says more."""
    if part_type and (part_type != DEFAULT_CONTENT_TYPE or not declared):
        return part_type
    return declared or DEFAULT_CONTENT_TYPE


async def _metadata(form: FormData) -> dict[str, Any]:
    """`metadata` as a JSON form field (PY), a JSON part (JS sends a Blob typed application/json), or bracketed
    fields (`metadata[key]=value`: Stainless-generated clients send an object so, every leaf a string)."""
    try:
        nested = bracketed("metadata", [(name, value) for name, value in form.multi_items() if isinstance(value, str)])
    except BracketError as exc:
        raise _bad_metadata(str(exc)) from None
    if nested is None:
        return await _json_metadata(form.get("metadata"))
    if form.get("metadata") is not None:
        raise _bad_metadata("Send metadata either as one JSON object or as metadata[key] fields, not both")
    if len(orjson.dumps(nested)) > METADATA_MAX_BYTES:
        raise _too_much_metadata()
    return nested


async def _json_metadata(value: str | UploadFile | None) -> dict[str, Any]:
    raw = await value.read(METADATA_MAX_BYTES + 1) if isinstance(value, UploadFile) else value
    if not raw:
        return {}
    if len(raw) > METADATA_MAX_BYTES:
        raise _too_much_metadata()
    try:
        metadata = parse_json(raw)
    except ValueError:
        raise _bad_metadata("Must be valid JSON") from None
    if not isinstance(metadata, dict):
        raise _bad_metadata("Must be a JSON object")
    return metadata


def _too_much_metadata() -> InvalidInput:
    return _bad_metadata(f"Must be at most {METADATA_MAX_BYTES} bytes of JSON")


def _bad_metadata(description: str) -> InvalidInput:
    return InvalidInput([{"type": "invalid_type", "field": "metadata", "description": description}], title="Invalid request body")


async def _spooled_body(request: Request) -> tempfile.SpooledTemporaryFile[bytes]:
    """The request body in memory, or on disk once large; the body-limit middleware bounds its size."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115  # the caller closes it
    try:
        async for chunk in request.stream():
            await asyncio.to_thread(spool.write, chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _page_url(root: str, cursor: str | None) -> str | None:
    return None if cursor is None else f"{root}/files?{urlencode({'cursor': cursor})}"


routes = [
    Route("/files", create_file, methods=["POST"]),
    Route("/files", list_files, methods=["GET"]),
    Route("/files/{file_id}", get_file, methods=["GET"]),
    Route("/files/{file_id}", delete_file, methods=["DELETE"]),
    Route("/files/{file_id}/download", download_file, methods=["GET"]),
    Route("/files/{file_id}/download/{expiry}/{signature}/{name:path}", download_file, methods=["GET"]),
]

upload_routes = [Route("/uploads/{token}/{filename:path}", upload_output, methods=["PUT"])]
