"""`S3Storage`: file blobs in an S3-compatible object store (AWS S3, MinIO, ...), shared by every gateway process.

Blobs are read back only through the gateway (its signed URLs or the owner's key, streamed chunk by chunk), never
through presigned object-store URLs: the URLs tenants see keep Replicate's shape, the bucket stays private, and
the file's record in Redis, not the object key, decides who may read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.response import StreamingBody
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from gateway.errors import NotFound, StoreError
from gateway.files.storage import CHUNK_BYTES, checked_key

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

PART_BYTES = 8 * 1024 * 1024  # multipart uploads: S3 wants parts of at least 5 MiB (but the last)
MIN_PART_BYTES = 5 * 1024 * 1024
# A download holds its connection for as long as its client takes to read: botocore's default pool of 10 would
# let ten slow readers stall every other file operation of the process.
CONNECTIONS = 128
_MISSING = frozenset({"NoSuchKey", "NotFound", "404"})
_FAILURES = (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class S3Location:
    """`s3://<bucket>[/<prefix>]`: where blobs go, as `<prefix>/<key>`."""

    bucket: str
    prefix: str = ""

    def key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class S3Access:
    """How to reach the store. Unset credentials and region fall back to botocore's own chain (profiles,
    instance or pod roles)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:  # never the secrets, whoever prints it
        return f"S3Access(endpoint_url={self.endpoint_url!r}, region={self.region!r})"


def _client_config(access: S3Access) -> AioConfig:
    return AioConfig(
        max_pool_connections=CONNECTIONS,
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 2, "mode": "standard"},
        # Servers other than AWS are reached by path: `bucket.127.0.0.1` names no host.
        s3={"addressing_style": "path" if access.endpoint_url else "auto"},
        # Checksums only where S3 requires them: several S3-compatible servers refuse the newer default ones.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


class S3Storage:
    """The `FileStorage` protocol over one bucket. `start` opens the client and checks the bucket; `aclose` closes it."""

    def __init__(self, location: S3Location, access: S3Access, part_bytes: int = PART_BYTES) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"parts must hold at least {MIN_PART_BYTES} bytes")
        self._location = location
        self._access = access
        self._part_bytes = part_bytes
        self._exits = contextlib.AsyncExitStack()
        self._s3: S3Client | None = None

    async def start(self) -> None:
        """Open the client; StoreError naming the bucket (never a credential) when it cannot be reached."""
        access = self._access
        creating = get_session().create_client(
            "s3",
            endpoint_url=access.endpoint_url,
            region_name=access.region,
            aws_access_key_id=access.access_key_id,
            aws_secret_access_key=access.secret_access_key,
            aws_session_token=access.session_token,
            config=_client_config(access),
        )
        self._s3 = await self._exits.enter_async_context(creating)
        try:
            await self._s3.head_bucket(Bucket=self._location.bucket)
        except _FAILURES as exc:
            where = f" at {_without_userinfo(access.endpoint_url)}" if access.endpoint_url else ""
            raise StoreError(f"The file storage bucket {self._location} is not reachable{where} ({_reason(exc)})") from None

    async def aclose(self) -> None:
        await self._exits.aclose()
        self._s3 = None

    async def put(self, key: str, source: IO[bytes] | bytes) -> None:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        name = self._name(key)
        first = await asyncio.to_thread(stream.read, self._part_bytes)
        with _mapped_errors():
            if len(first) < self._part_bytes:
                await self._client.put_object(Bucket=self._location.bucket, Key=name, Body=first)
            else:
                await self._put_in_parts(name, first, stream)

    async def read(self, key: str) -> bytes:
        with _mapped_errors():
            answer = await self._client.get_object(Bucket=self._location.bucket, Key=self._name(key))
            async with answer["Body"] as body:
                return await body.read()

    async def open(self, key: str) -> AsyncIterator[bytes]:
        with _mapped_errors():
            answer = await self._client.get_object(Bucket=self._location.bucket, Key=self._name(key))
        return _chunks(answer["Body"])

    async def delete(self, key: str) -> bool:
        if not await self.exists(key):  # S3 deletes are silent about missing objects
            return False
        with _mapped_errors():
            await self._client.delete_object(Bucket=self._location.bucket, Key=self._name(key))
        return True

    async def exists(self, key: str) -> bool:
        try:
            with _mapped_errors():
                await self._client.head_object(Bucket=self._location.bucket, Key=self._name(key))
        except NotFound:
            return False
        return True

    @property
    def _client(self) -> S3Client:
        if self._s3 is None:
            raise StoreError("The gateway's file storage is not open")
        return self._s3

    def _name(self, key: str) -> str:
        return self._location.key(checked_key(key))

    async def _put_in_parts(self, name: str, first: bytes, stream: IO[bytes]) -> None:
        """A multipart upload holding one part in memory at a time; aborted (no parts left behind) on any failure."""
        bucket, s3 = self._location.bucket, self._client
        upload_id = (await s3.create_multipart_upload(Bucket=bucket, Key=name))["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            chunk = first
            while chunk:
                number = len(parts) + 1
                sent = await s3.upload_part(Bucket=bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=chunk)
                parts.append({"ETag": sent["ETag"], "PartNumber": number})
                chunk = await asyncio.to_thread(stream.read, self._part_bytes)
            await s3.complete_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(*_FAILURES):
                await s3.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id)
            raise


async def _chunks(body: StreamingBody) -> AsyncIterator[bytes]:
    """The object's bytes a chunk at a time; the connection goes back to the pool however the reader stops."""
    async with body:
        with _mapped_errors():
            async for chunk in body.iter_chunks(CHUNK_BYTES):
                yield chunk


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    """A missing object is NotFound; any other failure StoreError."""
    try:
        yield
    except _FAILURES as exc:
        reason = _reason(exc)
        if reason in _MISSING:
            raise NotFound("File not found") from None
        raise StoreError(f"The gateway's file storage is failing ({reason})") from exc


def _without_userinfo(url: str) -> str:
    """The endpoint as it may be shown: a `user:password@` written into it is left out."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _reason(exc: BaseException) -> str:
    """S3's error code, else the failure's class: never a message of the lower layers, which may carry URLs and
    headers."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "unknown"))
    return type(exc).__name__
