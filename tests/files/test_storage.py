"""One battery over every `FileStorage`: a directory (`LocalStorage`) and an S3-protocol server (`S3Storage`)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tempfile
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.errors import NotFound, StoreError
from gateway.files import FileStorage, LocalStorage, S3Access, S3Location, S3Storage
from gateway.files.s3 import MIN_PART_BYTES
from tests.files.object_store import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, ObjectStore, object_store
from tests.servers import free_port

LARGE_BYTES = 2 * MIN_PART_BYTES + 12345  # three parts of an S3 multipart upload


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    with object_store(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="module")
def bucket(s3: ObjectStore) -> str:
    return s3.new_bucket()


def _access(endpoint_url: str) -> S3Access:
    return S3Access(endpoint_url, REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY)


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileStorage]:
    """A fresh, started storage of each kind (S3: its own key prefix in the module's bucket)."""
    if request.param == "local":
        backend: FileStorage = LocalStorage(tmp_path / "files")
    else:
        s3, bucket = request.getfixturevalue("s3"), request.getfixturevalue("bucket")
        backend = S3Storage(S3Location(bucket, f"t/{uuid.uuid4().hex}"), _access(s3.url), part_bytes=MIN_PART_BYTES)
    await backend.start()
    yield backend
    await backend.aclose()


async def _joined(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def _key() -> str:
    return uuid.uuid4().hex


async def test_a_blob_put_is_read_opened_and_exists(storage: FileStorage) -> None:
    key = _key()
    await storage.put(key, b"hello blob")
    assert await storage.read(key) == b"hello blob"
    assert await _joined(await storage.open(key)) == b"hello blob"
    assert await storage.exists(key) is True


async def test_put_reads_a_file_object_from_its_current_position(storage: FileStorage) -> None:
    key, source = _key(), io.BytesIO(b"skip:kept")
    source.seek(5)
    await storage.put(key, source)
    assert await storage.read(key) == b"kept"


async def test_an_empty_blob_round_trips(storage: FileStorage) -> None:
    key = _key()
    await storage.put(key, b"")
    assert await storage.read(key) == b""
    assert await storage.exists(key) is True


async def test_a_put_replaces_the_old_blob(storage: FileStorage) -> None:
    key = _key()
    await storage.put(key, b"old and longer")
    await storage.put(key, b"new")
    assert await storage.read(key) == b"new"


async def test_delete_removes_the_blob_and_says_whether_there_was_one(storage: FileStorage) -> None:
    key = _key()
    await storage.put(key, b"gone soon")
    assert await storage.delete(key) is True
    assert await storage.exists(key) is False
    assert await storage.delete(key) is False


async def test_a_missing_blob_is_not_found_on_read_and_on_open_before_any_chunk(storage: FileStorage) -> None:
    key = _key()
    assert await storage.exists(key) is False
    with pytest.raises(NotFound) as read:
        await storage.read(key)
    with pytest.raises(NotFound) as opened:
        await storage.open(key)  # the call itself raises: a download answers 404 before sending headers
    assert read.value.detail == opened.value.detail == "File not found"


@pytest.mark.parametrize("key", ["", "../escape", "a/b", ".hidden", "x" * 201])
async def test_keys_that_could_name_anything_but_one_blob_are_refused(storage: FileStorage, key: str) -> None:
    with pytest.raises(ValueError, match="is not a storage key"):
        await storage.put(key, b"x")
    with pytest.raises(ValueError, match="is not a storage key"):
        await storage.read(key)


async def test_a_large_blob_streams_in_and_out_in_chunks(storage: FileStorage) -> None:
    key, digest = _key(), hashlib.sha256()
    with tempfile.TemporaryFile() as source:
        block = bytes(range(256)) * 4096
        while source.tell() < LARGE_BYTES:
            source.write(block[: LARGE_BYTES - source.tell()])
        source.seek(0)
        expected = hashlib.sha256(source.read()).hexdigest()
        source.seek(0)
        await storage.put(key, source)
    sizes = []
    async for chunk in await storage.open(key):
        digest.update(chunk)
        sizes.append(len(chunk))
    assert (sum(sizes), digest.hexdigest()) == (LARGE_BYTES, expected)
    assert max(sizes) <= 1024 * 1024  # never the whole blob in one piece


# --- S3 only: where the objects go, multipart uploads, failures -------------------------------------------


async def test_s3_keeps_blobs_under_the_prefix_and_uploads_large_ones_in_parts(s3: ObjectStore, bucket: str) -> None:
    prefix, small, large = f"p/{uuid.uuid4().hex}", _key(), _key()
    storage = S3Storage(S3Location(bucket, prefix), _access(s3.url), part_bytes=MIN_PART_BYTES)
    await storage.start()
    try:
        await storage.put(small, b"small")
        await storage.put(large, io.BytesIO(b"z" * LARGE_BYTES))
    finally:
        await storage.aclose()
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    etags = {item["Key"]: item["ETag"].strip('"') for item in listing["Contents"]}
    assert sorted(etags) == sorted([f"{prefix}/{small}", f"{prefix}/{large}"])
    assert etags[f"{prefix}/{large}"].endswith("-3")  # a multipart upload of three parts
    assert "-" not in etags[f"{prefix}/{small}"]
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_s3_holds_about_one_part_in_memory_whatever_the_blobs_size(s3: ObjectStore, bucket: str) -> None:
    storage = S3Storage(S3Location(bucket, "memory"), _access(s3.url), part_bytes=MIN_PART_BYTES)
    await storage.start()
    with tempfile.TemporaryFile() as source:
        for _ in range(8):
            source.write(os.urandom(MIN_PART_BYTES))
        source.seek(0)
        tracemalloc.start()
        try:
            await storage.put(_key(), source)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            await storage.aclose()
    # A part, its copy in the request and the next one being read: far below the 40 MiB blob.
    assert peak < 4 * MIN_PART_BYTES, f"{peak / 2**20:.1f} MiB"


async def test_s3_downloads_being_read_slowly_leave_connections_for_other_operations(s3: ObjectStore, bucket: str) -> None:
    storage = S3Storage(S3Location(bucket, "slow"), _access(s3.url))
    await storage.start()
    key = _key()
    await storage.put(key, os.urandom(3 * 1024 * 1024))
    readers: list[AsyncIterator[bytes]] = []
    try:
        async with asyncio.timeout(10):  # with too small a pool, the eleventh open waits for good
            for _ in range(16):
                readers.append(await storage.open(key))
                assert await anext(readers[-1])  # a first chunk read; the rest waits on its connection
            assert await storage.exists(key) is True
    finally:
        for reader in readers:
            await reader.aclose()  # type: ignore[attr-defined]
        await storage.aclose()


async def test_s3_start_refuses_a_missing_bucket_by_name_without_credentials(s3: ObjectStore) -> None:
    storage = S3Storage(S3Location("no-such-bucket-here", "x"), _access(s3.url))
    with pytest.raises(StoreError) as failed:
        await storage.start()
    await storage.aclose()
    assert failed.value.detail == f"The file storage bucket s3://no-such-bucket-here/x is not reachable at {s3.url} (404)"


async def test_s3_start_refuses_an_unreachable_server_without_credentials_of_its_url() -> None:
    port = free_port()
    storage = S3Storage(S3Location("some-bucket"), _access(f"http://proxy-user:proxy-password@127.0.0.1:{port}"))
    with pytest.raises(StoreError) as failed:
        await storage.start()
    await storage.aclose()
    assert failed.value.detail.startswith(f"The file storage bucket s3://some-bucket is not reachable at http://127.0.0.1:{port} (")
    assert "proxy-password" not in failed.value.detail


async def test_s3_failures_are_store_errors_that_name_no_credential(tmp_path: Path) -> None:
    with object_store(tmp_path) as server:
        bucket = server.new_bucket()
        storage = S3Storage(S3Location(bucket), _access(server.url))
        await storage.start()
        await storage.put("kept", b"x")
    try:  # the server has stopped
        for call in (storage.read("kept"), storage.open("kept"), storage.exists("kept"), storage.put("more", b"y")):
            with pytest.raises(StoreError) as failed:
                await call
            assert failed.value.status == 503
            assert failed.value.detail == "The gateway's file storage is failing (EndpointConnectionError)"
            assert SECRET_ACCESS_KEY not in repr(failed.value.__cause__) and ACCESS_KEY_ID not in str(failed.value.__cause__)
    finally:
        await storage.aclose()


def test_s3_access_never_shows_its_secrets() -> None:
    shown = repr(S3Access("http://s3.example", REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY, "session-token"))
    assert SECRET_ACCESS_KEY not in shown and ACCESS_KEY_ID not in shown and "session-token" not in shown
