"""Blob storage for file contents behind one small protocol; `LocalStorage` keeps blobs in a directory."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Protocol

from gateway.errors import NotFound, StoreError

CHUNK_BYTES = 1024 * 1024
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,199}$")


class FileStorage(Protocol):
    """Where file bytes live, addressed by an opaque key. Missing blobs raise NotFound; failures StoreError.

    `start` (before first use: opens clients, checks the backend is reachable) and `aclose` bracket its life;
    `LocalStorage` (one directory per process) and `S3Storage` (one bucket shared by every process) implement it.
    """

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def put(self, key: str, source: IO[bytes] | bytes) -> None:
        """Store all of `source` (read from its current position) under `key`, replacing any old blob."""

    async def read(self, key: str) -> bytes:
        """The whole blob."""

    async def open(self, key: str) -> AsyncIterator[bytes]:
        """The blob as chunks; NotFound is raised here, before the first chunk is asked for."""

    async def delete(self, key: str) -> bool:
        """Remove the blob; False when there was none."""

    async def exists(self, key: str) -> bool: ...


class LocalStorage:
    """Blobs as files under `directory` (two-character shards); each write is a temp file renamed into place."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    async def start(self) -> None:
        """Nothing to open: the directory is made with the first blob."""

    async def aclose(self) -> None:
        """Nothing to close."""

    async def put(self, key: str, source: IO[bytes] | bytes) -> None:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        await asyncio.to_thread(self._write, self._path(key), stream)

    async def read(self, key: str) -> bytes:
        return await asyncio.to_thread(self._read, self._path(key))

    async def open(self, key: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self._open, self._path(key))
        return _chunks(handle)

    async def delete(self, key: str) -> bool:
        return await asyncio.to_thread(self._delete, self._path(key))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    def _path(self, key: str) -> Path:
        return self._directory / key[:2] / checked_key(key)

    @staticmethod
    def _write(path: Path, source: IO[bytes]) -> None:
        with _mapped_errors():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK_BYTES)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, path)  # readers see the old blob or the whole new one, never a part
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise

    @staticmethod
    def _read(path: Path) -> bytes:
        with _mapped_errors():
            return path.read_bytes()

    @staticmethod
    def _open(path: Path) -> IO[bytes]:
        with _mapped_errors():
            return path.open("rb")

    @staticmethod
    def _delete(path: Path) -> bool:
        with _mapped_errors():
            try:
                path.unlink()
            except FileNotFoundError:
                return False
        return True


def checked_key(key: str) -> str:
    """`key`, unless it could name anything but one blob (a path, an empty name): then ValueError."""
    if not _KEY.match(key):
        raise ValueError(f"{key!r} is not a storage key")
    return key


async def _chunks(handle: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    """A missing blob is NotFound; any other disk failure is StoreError, without the path."""
    try:
        yield
    except FileNotFoundError:
        raise NotFound("File not found") from None
    except OSError as exc:
        raise StoreError(f"The gateway's file storage is failing ({type(exc).__name__})") from exc
