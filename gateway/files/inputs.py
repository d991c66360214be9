"""Gateway file URLs in prediction inputs, replaced by URLs an upstream can fetch before dispatch."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from gateway.errors import InvalidInput, NotFound, PayloadTooLarge
from gateway.files.service import Files, human_size
from gateway.store import StoredFile

INPUT_URL_SECONDS = 3600  # how long an upstream may fetch a file a prediction's input points at
INLINE_MAX_BYTES = 10 * 1024 * 1024  # the largest file passed to an upstream as a data: URI

FileIdIn = Callable[[str], str | None]
"""The file id when a string is one of the gateway's file URLs, else None."""
DownloadUrl = Callable[[StoredFile, float], str]
"""A signed download URL of a file, valid until a Unix time."""
_Problems = list[dict[str, str]]  # InvalidInput's invalid_fields, collected


class InputFiles:
    def __init__(self, files: Files, file_id_in: FileIdIn) -> None:
        self._files = files
        self._file_id_in = file_id_in

    async def resolve(self, tenant: str, given: dict[str, Any], download_url: DownloadUrl | None) -> dict[str, Any]:
        """`given` with every gateway file URL replaced by one the upstream can fetch.

        With `download_url` that is a signed download URL valid for an hour (at most until the file expires),
        otherwise a `data:` URI of the bytes. A missing or foreign file is an InvalidInput `file_not_found`.
        """
        problems: _Problems = []
        resolved = {
            name: await self._resolve(tenant, value, f"input.{name}", download_url, problems) for name, value in given.items()
        }
        if problems:
            raise InvalidInput(problems)
        return resolved

    async def _resolve(self, tenant: str, value: Any, field: str, download_url: DownloadUrl | None, problems: _Problems) -> Any:
        if isinstance(value, list):
            return [await self._resolve(tenant, v, f"{field}.{i}", download_url, problems) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: await self._resolve(tenant, v, f"{field}.{k}", download_url, problems) for k, v in value.items()}
        file_id = self._file_id_in(value) if isinstance(value, str) else None
        if file_id is None:
            return value
        try:
            return await self._fetchable_url(tenant, file_id, download_url)
        except NotFound:
            problems.append({"type": "file_not_found", "field": field, "description": f"File {file_id} not found"})
        except PayloadTooLarge as exc:
            problems.append({"type": "file_too_large", "field": field, "description": exc.detail})
        return value

    async def _fetchable_url(self, tenant: str, file_id: str, download_url: DownloadUrl | None) -> str:
        file = await self._files.get(tenant, file_id)
        if download_url is not None:
            return download_url(file, min(time.time() + INPUT_URL_SECONDS, file.expires_ms / 1000))
        if file.size > INLINE_MAX_BYTES:
            raise PayloadTooLarge(f"File {file_id} is too large to pass inline ({human_size(INLINE_MAX_BYTES)} at most)")
        data = base64.b64encode(await self._files.read(file)).decode()
        return f"data:{file.content_type};base64,{data}"
