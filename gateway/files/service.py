"""The files service: tenant uploads and model outputs, read back with a key or a signed download URL.

A file is a metadata record in the store (expiring with the file) plus a blob in file storage under the
file's id. A signed download URL lets anyone holding it read the file until it expires, with no API key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import mimetypes
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Any

from gateway.cursors import window
from gateway.errors import Forbidden, GatewayError, InvalidInput, NotFound, PayloadTooLarge
from gateway.files.signing import DownloadSignatures, UploadTokens
from gateway.files.storage import CHUNK_BYTES, FileStorage
from gateway.store import FileStore, PredictionStore, StoredFile

logger = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/octet-stream"
NAME_MAX_BYTES = 255
SWEEP_BATCH = 100
_MIB, _KIB = 1024 * 1024, 1024
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(\s*;[ -~]*)?$")
_PREDICTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

OwnerOf = Callable[[str], Awaitable[str | None]]
"""The tenant owning a prediction id, or None when there is no such prediction."""


@dataclass(frozen=True)
class Upload:
    """A new file's bytes (a seekable stream at its start) and what the uploader says about them."""

    source: IO[bytes]
    name: str
    content_type: str = DEFAULT_CONTENT_TYPE
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class FileLimits:
    max_bytes: int
    expiry_seconds: int
    page_size: int = 100


@dataclass(frozen=True)
class FilePage:
    files: list[StoredFile]
    next_cursor: str | None
    previous_cursor: str | None


@dataclass(frozen=True)
class _Digest:
    size: int
    sha256: str
    md5: str


def too_large_detail(max_bytes: int) -> str:
    """Replicate's 413 wording for the configured limit."""
    return f"Files must be less than {human_size(max_bytes)} in size"


def prediction_owners(store: PredictionStore) -> OwnerOf:
    """`owner_of` over the prediction store."""

    async def owner_of(prediction_id: str) -> str | None:
        if not _PREDICTION_ID.match(prediction_id):
            return None
        record = await store.get(prediction_id)
        return None if record is None else record.tenant

    return owner_of


class Files:
    """Create, read, list and delete files; sign and check download URLs; take Cog output uploads."""

    def __init__(
        self,
        store: FileStore,
        storage: FileStorage,
        signatures: DownloadSignatures,
        uploads: UploadTokens,
        owner_of: OwnerOf,
        limits: FileLimits,
    ) -> None:
        self._store = store
        self._storage = storage
        self._signatures = signatures
        self._uploads = uploads
        self._owner_of = owner_of
        self._limits = limits

    async def create(self, tenant: str, upload: Upload) -> StoredFile:
        """Check, hash and store the bytes, then record the file: no record ever points at a missing blob."""
        name, content_type = _checked_name(upload.name), _checked_content_type(upload.content_type)
        digest = await asyncio.to_thread(_digest, upload.source)
        if digest.size > self._limits.max_bytes:
            raise PayloadTooLarge(too_large_detail(self._limits.max_bytes))
        now_ms = int(time.time() * 1000)
        file = StoredFile(
            id=_new_file_id(),
            tenant=tenant,
            name=name,
            content_type=content_type,
            size=digest.size,
            sha256=digest.sha256,
            md5=digest.md5,
            metadata=upload.metadata or {},
            created_ms=now_ms,
            expires_ms=now_ms + self._limits.expiry_seconds * 1000,
        )
        await self._store.reserve(file.id, file.expires_ms)
        await self._storage.put(file.id, upload.source)
        await self._store.insert(file)
        return file

    async def get(self, tenant: str, file_id: str) -> StoredFile:
        file = await self._live(file_id)
        if file is None or file.tenant != tenant:
            raise NotFound("File not found")
        return file

    async def list(self, tenant: str, cursor: str | None) -> FilePage:
        """The tenant's files, newest first, a page at a time."""
        page = await window(
            cursor,
            self._limits.page_size,
            lambda edge, count: self._store.older(tenant, edge, count),
            lambda edge, count: self._store.newer(tenant, edge, count),
        )
        return FilePage(await self._store.load(page.entries), page.next_cursor, page.previous_cursor)

    async def delete(self, tenant: str, file_id: str) -> None:
        file = await self.get(tenant, file_id)
        await self._store.delete(file)
        await self._drop_blob(file.id)

    async def open(self, file: StoredFile) -> AsyncIterator[bytes]:
        """The file's bytes as chunks (NotFound when the blob has gone)."""
        return await self._storage.open(file.id)

    async def signed(self, file_id: str, expiry: str, signature: str, owner: str | None = None) -> StoredFile:
        """The file a signed download URL names (`owner` comes with the query form; the path form signs the file's own).

        Forbidden for a bad or expired signature; NotFound when the file is gone.
        """
        file = await self._live(file_id)
        signer = owner if owner is not None else (file.tenant if file else None)
        if signer is None:
            raise NotFound("File not found")
        if not self._signatures.verify(signer, file_id, expiry, signature):
            raise Forbidden("The download URL's signature is not valid")
        if not expiry.isdigit() or int(expiry) <= time.time():
            raise Forbidden("The download URL has expired")
        if file is None or file.tenant != signer:
            raise NotFound("File not found")
        return file

    def check_upload_token(self, token: str) -> None:
        self._uploads.check(token)

    async def store_output(self, token: str, prediction_id: str, upload: Upload) -> StoredFile:
        """A Cog server's output file, owned by the tenant of `prediction_id`."""
        self.check_upload_token(token)
        tenant = await self._owner_of(prediction_id)
        if tenant is None:
            raise NotFound("The prediction this output belongs to does not exist")
        content_type = upload.content_type if _CONTENT_TYPE.match(upload.content_type) else _guess_type(upload.name)
        output = Upload(upload.source, upload.name, content_type, {"prediction_id": prediction_id})
        return await self.create(tenant, output)

    async def read(self, file: StoredFile) -> bytes:
        """All of the file's bytes (NotFound when the blob has gone)."""
        return await self._storage.read(file.id)

    async def sweep(self, now: float | None = None) -> int:
        """Delete the blobs of expired (or deleted) files; the number of files swept."""
        now_ms = int((time.time() if now is None else now) * 1000)
        swept = 0
        while due := await self._store.expired(now_ms, SWEEP_BATCH):
            for file_id in due:
                await self._drop_blob(file_id)
            swept += len(due)
        return swept

    async def sweep_forever(self, interval: float) -> None:
        """Sweep every `interval` seconds until cancelled; a failed sweep is logged and retried next time."""
        while True:
            await asyncio.sleep(interval)
            try:
                swept = await self.sweep()
            except GatewayError as exc:  # Redis or the disk is failing: try again next time
                logger.warning("file sweep failed: %s", exc.detail)
            else:
                if swept:
                    logger.info("swept %d expired files", swept)

    async def _live(self, file_id: str) -> StoredFile | None:
        file = await self._store.get(file_id)
        return file if file is not None and file.expires_ms > time.time() * 1000 else None

    async def _drop_blob(self, file_id: str) -> None:
        await self._storage.delete(file_id)
        await self._store.forget(file_id)


def _digest(source: IO[bytes]) -> _Digest:
    """Size and checksums of `source`, which is left at its start again."""
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    start = source.tell()
    while chunk := source.read(CHUNK_BYTES):
        sha256.update(chunk)
        md5.update(chunk)
        size += len(chunk)
    source.seek(start)
    return _Digest(size, sha256.hexdigest(), md5.hexdigest())


def _checked_name(name: str) -> str:
    if len(name.encode()) > NAME_MAX_BYTES:
        raise InvalidInput(
            [{"type": "max_length", "field": "filename", "description": f"Must be at most {NAME_MAX_BYTES} bytes"}]
        )
    return name


def _checked_content_type(content_type: str) -> str:
    if not _CONTENT_TYPE.match(content_type):
        raise InvalidInput([{"type": "format", "field": "type", "description": "Must be a MIME type such as image/png"}])
    return content_type


def _guess_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or DEFAULT_CONTENT_TYPE


def _new_file_id() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()


def human_size(size: int) -> str:
    if size % _MIB == 0:
        return f"{size // _MIB}MB"
    if size % _KIB == 0:
        return f"{size // _KIB}KB"
    return f"{size} bytes"
