import asyncio
import base64
import contextlib
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from replicate.client import Client
from replicate.helpers import FileOutput

from gateway.api.urls import Links, file_id_in
from gateway.errors import InvalidInput
from gateway.files import FileLimits, Files, InputFiles, LocalStorage, Upload, prediction_owners
from gateway.signing import SECRET_NAME, Signer
from gateway.store import Store
from tests.conftest import INPAINTING_VERSION, Gateway, gateway_settings, inpainting_input, run_gateway
from tests.servers import free_port

MAX_BYTES = 4096
PAGE_SIZE = 2
FILE_KEYS = {"id", "name", "content_type", "size", "etag", "checksums", "metadata", "created_at", "expires_at", "urls"}
NOT_FOUND = {"title": "Not found", "detail": "File not found", "status": 404}


@pytest.fixture(scope="module")
def files_gateway(redis_url: str, catalog_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with small file limits, a short page and its own file directory (same Redis as `gateway`)."""
    port = free_port()
    settings = gateway_settings(
        redis_url,
        catalog_path,
        port,
        files_dir=tmp_path_factory.mktemp("files"),
        file_max_bytes=MAX_BYTES,
        file_page_size=PAGE_SIZE,
        file_sweep_seconds=0.2,
    )
    with run_gateway(settings) as gateway:
        yield gateway


@pytest.fixture
def files_api(files_gateway: Gateway, tenant_key: str) -> Iterator[httpx.Client]:
    with files_gateway.client(tenant_key) as client:
        yield client


@pytest.fixture
async def service(redis_url: str, files_gateway: Gateway) -> AsyncIterator[Files]:
    """A second Files service over the same Redis, secret and directory, as another gateway process would have."""
    store = Store.connect(redis_url, prediction_retention_seconds=3600, audit_retention_seconds=3600)
    yield await _files_service(store, files_gateway, expiry_seconds=60)
    await store.aclose()


@pytest.fixture
async def links(redis_url: str, files_gateway: Gateway) -> AsyncIterator[Links]:
    """The gateway's links as another gateway process makes them."""
    store = Store.connect(redis_url, prediction_retention_seconds=3600, audit_retention_seconds=3600)
    yield await _links(store, files_gateway)
    await store.aclose()


async def _links(store: Store, gateway: Gateway) -> Links:
    return Links(Signer(await store.shared_secret(SECRET_NAME)), gateway.url, gateway.url)


async def _files_service(store: Store, gateway: Gateway, *, expiry_seconds: int) -> Files:
    links = await _links(store, gateway)
    return Files(
        store.files,
        LocalStorage(gateway.settings.files_directory()),
        links.downloads,
        links.uploads,
        prediction_owners(store.predictions),
        FileLimits(MAX_BYTES, expiry_seconds, PAGE_SIZE),
    )


@contextlib.contextmanager
def _python_client(token: str, gateway: Gateway) -> Iterator[Client]:
    """The unmodified PY client (its own connection pool, closed afterwards)."""
    transport = httpx.HTTPTransport()
    try:
        yield Client(api_token=token, base_url=gateway.url, transport=transport)
    finally:
        transport.close()


def _blob(gateway: Gateway, file_id: str) -> Path:
    return gateway.settings.files_directory() / file_id[:2] / file_id


def _upload(
    client: httpx.Client, data: bytes = b"hello", name: str = "hello.txt", content_type: str = "text/plain", **fields: str
) -> dict[str, Any]:
    response = client.post("/files", files={"content": (name, data, content_type)}, data=fields)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _tenant(client: httpx.Client) -> str:
    return str(client.get("/account").json()["username"])


# --- upload, get, list, delete -----------------------------------------------------------------


def test_upload_returns_the_file_object_with_checksums_and_an_absolute_url(
    files_gateway: Gateway, files_api: httpx.Client
) -> None:
    data = b"\x89PNG fake image bytes"
    response = files_api.post(
        "/files", files={"content": ("cat.png", data, "image/png")}, data={"metadata": json.dumps({"purpose": "mask"})}
    )
    assert response.status_code == 201 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == FILE_KEYS
    md5, sha256 = hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()
    assert (body["name"], body["content_type"], body["size"], body["etag"]) == ("cat.png", "image/png", len(data), md5)
    assert body["checksums"] == {"sha256": sha256, "md5": md5}
    assert body["metadata"] == {"purpose": "mask"}
    assert body["urls"] == {"get": f"{files_gateway.url}/v1/files/{body['id']}"}
    created, expires = (time.mktime(time.strptime(body[k][:19], "%Y-%m-%dT%H:%M:%S")) for k in ("created_at", "expires_at"))
    assert expires - created == 24 * 3600 and body["created_at"].endswith("Z")
    assert files_api.get(f"/files/{body['id']}").json() == body
    assert _blob(files_gateway, body["id"]).read_bytes() == data


def test_form_fields_name_and_type_the_file_and_metadata_may_be_a_json_part(files_api: httpx.Client) -> None:
    named = _upload(files_api, b"x", "upload.bin", "application/octet-stream", filename="renamed.png", type="image/png")
    assert (named["name"], named["content_type"]) == ("renamed.png", "image/png")
    typed = _upload(files_api, b"x", "a.txt", "text/plain", type="image/png")
    assert typed["content_type"] == "text/plain"
    as_blob = files_api.post(
        "/files", files={"content": ("a.txt", b"x", "text/plain"), "metadata": ("blob", b'{"a": 1}', "application/json")}
    )
    assert as_blob.status_code == 201 and as_blob.json()["metadata"] == {"a": 1}
    empty = _upload(files_api, b"", "empty.txt")
    assert (empty["size"], empty["etag"]) == (0, "d41d8cd98f00b204e9800998ecf8427e")


@pytest.mark.parametrize(
    ("files", "data", "field"),
    [
        ({"other": ("a.txt", b"x", "text/plain")}, {}, "content"),
        ({"content": ("a.txt", b"x", "text/plain")}, {"metadata": "[1, 2]"}, "metadata"),
        ({"content": ("a.txt", b"x", "text/plain")}, {"metadata": "{not json"}, "metadata"),
        ({"content": ("a.txt", b"x", "text/plain")}, {"filename": "é" * 128}, "filename"),
        ({"content": ("a.txt", b"x", "no type at all")}, {}, "type"),
        ({"content": ("a.bin", b"x", "application/octet-stream")}, {"type": "<script>"}, "type"),
    ],
)
def test_malformed_uploads_are_422_naming_the_field(
    files_api: httpx.Client, files: dict[str, Any], data: dict[str, str], field: str
) -> None:
    response = files_api.post("/files", files=files, data=data)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [f["field"] for f in response.json()["invalid_fields"]] == [field]


def test_the_unmodified_python_client_uploads_gets_lists_and_deletes(
    files_gateway: Gateway, tenant_key: str, tmp_path: Path
) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(b"png bytes")
    with _python_client(tenant_key, files_gateway) as client:
        _python_client_round_trip(client, files_gateway, path)


def _python_client_round_trip(client: Client, files_gateway: Gateway, path: Path) -> None:
    created = client.files.create(path, metadata={"source": "py"})
    time.sleep(0.002)
    assert (created.name, created.content_type, created.size, created.metadata) == ("photo.png", "image/png", 9, {"source": "py"})
    assert created.etag == hashlib.md5(b"png bytes").hexdigest()
    with path.open("rb") as handle:
        second = client.files.create(handle)
    assert client.files.get(created.id).checksums == created.checksums
    assert [f.id for f in client.files.list()] == [second.id, created.id]
    assert client.files.delete(created.id) is True
    assert not _blob(files_gateway, created.id).exists()
    assert [f.id for f in client.files.list()] == [second.id]


def test_the_list_is_newest_first_in_pages_with_absolute_cursor_urls(files_gateway: Gateway, files_api: httpx.Client) -> None:
    ids: list[str] = []
    for i in range(5):
        ids.insert(0, _upload(files_api, str(i).encode())["id"])
        time.sleep(0.002)  # one file per millisecond, so that creation order is the list order
    first = files_api.get("/files").json()
    assert [f["id"] for f in first["results"]] == ids[:2] and first["previous"] is None
    assert first["next"].startswith(f"{files_gateway.url}/v1/files?cursor=")
    second = files_api.get(first["next"]).json()
    third = files_api.get(second["next"]).json()
    assert [f["id"] for f in second["results"]] == ids[2:4]
    assert [f["id"] for f in third["results"]] == ids[4:] and third["next"] is None
    back = files_api.get(third["previous"]).json()
    assert [f["id"] for f in back["results"]] == ids[2:4]
    assert files_api.get("/files", params={"cursor": "nonsense"}).status_code == 400


def test_the_aggregator_prefix_serves_files_with_its_own_urls(files_gateway: Gateway, tenant_key: str) -> None:
    with files_gateway.client(tenant_key, prefix="/replicate/v1") as client:
        created = _upload(client)
        assert created["urls"]["get"] == f"{files_gateway.url}/replicate/v1/files/{created['id']}"
        assert client.get(f"/files/{created['id']}/download").content == b"hello"


def test_delete_is_204_and_removes_the_blob(files_gateway: Gateway, files_api: httpx.Client) -> None:
    created = _upload(files_api)
    response = files_api.delete(f"/files/{created['id']}")
    assert response.status_code == 204 and response.content == b""
    assert not _blob(files_gateway, created["id"]).exists()
    assert files_api.get(f"/files/{created['id']}").json() == NOT_FOUND
    assert files_api.delete(f"/files/{created['id']}").status_code == 404


def test_tenants_never_see_each_others_files(files_gateway: Gateway, files_api: httpx.Client) -> None:
    created = _upload(files_api)
    other_token, _ = files_gateway.new_key()
    with files_gateway.client(other_token) as other:
        for response in (
            other.get(f"/files/{created['id']}"),
            other.delete(f"/files/{created['id']}"),
            other.get(f"/files/{created['id']}/download"),
        ):
            assert response.status_code == 404
            assert response.json() == NOT_FOUND
        assert other.get("/files").json() == {"next": None, "previous": None, "results": []}
    assert files_api.get(f"/files/{created['id']}").status_code == 200


def test_files_need_a_key_with_the_right_scope(files_gateway: Gateway) -> None:
    assert httpx.get(f"{files_gateway.url}/v1/files").status_code == 401
    read_only, _ = files_gateway.new_key(scopes=["read"])
    with files_gateway.client(read_only) as client:
        assert client.post("/files", files={"content": ("a", b"x")}).status_code == 403
        assert client.get("/files").status_code == 200


def test_files_over_the_limit_are_413_in_replicates_words(files_gateway: Gateway, files_api: httpx.Client) -> None:
    expected = {"title": "Payload too large", "detail": "Files must be less than 4KB in size", "status": 413}
    over = files_api.post("/files", files={"content": ("big.bin", b"x" * (MAX_BYTES + 1))})
    assert (over.status_code, over.json()) == (413, expected)
    far_over = files_api.post("/files", files={"content": ("big.bin", b"x" * (1024 * 1024 + MAX_BYTES + 1))})
    assert (far_over.status_code, far_over.json()) == (413, expected)
    assert files_api.post("/files", files={"content": ("max.bin", b"x" * MAX_BYTES)}).status_code == 201
    too_big_json = files_api.post("/predictions", content=b"{" + b" " * (300 * 1024) + b"}")
    assert too_big_json.json()["detail"] == "Request bodies must be at most 262144 bytes"


# --- downloads -----------------------------------------------------------------------------


def test_the_owner_downloads_with_a_key_and_nobody_without_one(files_gateway: Gateway, files_api: httpx.Client) -> None:
    created = _upload(files_api, b"some text", "notes.txt", "text/plain")
    response = files_api.get(f"/files/{created['id']}/download")
    assert response.status_code == 200 and response.content == b"some text"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["etag"] == f'"{created["etag"]}"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(f"{files_gateway.url}/v1/files/{created['id']}/download").status_code == 401


def _query_form(url: str, owner: str) -> str:
    """Replicate's form of a signed URL: the same signature, in standard base64, as query parameters."""
    prefix, expiry, signature, _ = url.rsplit("/", 3)
    standard = base64.b64encode(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))).decode()
    return f"{prefix}?{urlencode({'owner': owner, 'expiry': expiry, 'signature': standard})}"


async def test_signed_urls_work_without_auth_despite_an_unrelated_bearer_and_not_when_tampered_or_expired(
    files_gateway: Gateway, files_api: httpx.Client, service: Files, links: Links, tenant_key: str
) -> None:
    created = _upload(files_api, b"\x00\x01binary", "out 1.png", "image/png", filename="dir/out 1.png")
    tenant = _tenant(files_api)
    file = await service.get(tenant, created["id"])
    url = links.file_download(file, files_gateway.url)
    assert url.startswith(f"{files_gateway.url}/v1/files/{file.id}/download/") and url.endswith("/dir%2Fout%201.png")
    for signed in (url, _query_form(url, tenant)):
        for headers in ({}, {"Authorization": "Bearer not-a-gateway-key"}, {"Authorization": f"Bearer {tenant_key}"}):
            response = httpx.get(signed, headers=headers)
            assert (response.status_code, response.content) == (200, b"\x00\x01binary")
            assert response.headers["content-type"] == "image/png"
    with _python_client(tenant_key, files_gateway) as client:  # FileOutput.read() sends the API key along
        assert FileOutput(url, client).read() == b"\x00\x01binary"
    prefix, expiry, signature, name = url.rsplit("/", 3)
    query = _query_form(url, tenant)
    for bad in (
        f"{prefix}/{int(expiry) + 1}/{signature}/{name}",
        f"{prefix}/{expiry}/{signature[:-4]}AAAA/{name}",
        f"{prefix}/{expiry}/not*base64/{name}",
        query.replace("owner=", "owner=x"),
        query.replace("expiry=", "expiry=1"),
    ):
        response = httpx.get(bad)
        assert response.status_code == 403 and response.json()["detail"] == "The download URL's signature is not valid"
    expired = httpx.get(links.file_download(file, files_gateway.url, expires_at=time.time() - 1))
    assert (expired.status_code, expired.json()["detail"]) == (403, "The download URL has expired")
    files_api.delete(f"/files/{file.id}")
    assert httpx.get(url).json() == NOT_FOUND


# --- output uploads from Cog servers ---------------------------------------------------------


def _prediction_id(api: httpx.Client) -> str:
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_a_cog_output_upload_becomes_a_short_signed_url_owned_by_the_predictions_tenant(
    files_gateway: Gateway, api: httpx.Client, files_api: httpx.Client, links: Links
) -> None:
    prediction_id = _prediction_id(api)
    upload_url = links.upload("http://127.0.0.1:5100", base=files_gateway.url)
    assert upload_url.startswith(f"{files_gateway.url}/uploads/") and upload_url.endswith("/")
    headers = {"content-type": "image/png", "x-prediction-id": prediction_id}
    locations = []
    for data in (b"first png", b"second png"):  # Cog names every output out-0.png
        response = httpx.put(upload_url + "out-0.png", content=data, headers=headers)
        assert response.status_code == 201, response.text
        locations.append(response.headers["location"])
        time.sleep(0.002)
    assert locations[0] != locations[1]
    assert all(
        url.startswith(f"{files_gateway.url}/v1/files/") and url.endswith("/out-0.png") and "?" not in url for url in locations
    )
    assert [httpx.get(url).content for url in locations] == [b"first png", b"second png"]
    listed = files_api.get("/files").json()["results"]
    assert [f["id"] for f in listed] == [url.split("/")[-5] for url in locations[::-1]]
    assert [(f["name"], f["content_type"], f["metadata"]) for f in listed] == [
        ("out-0.png", "image/png", {"prediction_id": prediction_id})
    ] * 2


async def test_output_uploads_need_a_valid_token_and_a_known_prediction(
    files_gateway: Gateway, api: httpx.Client, links: Links
) -> None:
    upload_url = links.upload("server-a", base=files_gateway.url)
    prediction_id = _prediction_id(api)
    forged = upload_url.replace(upload_url.split("/")[-2], upload_url.split("/")[-2][:-4] + "0000")
    for url, headers, status in (
        (forged + "out.png", {"x-prediction-id": prediction_id}, 403),
        (f"{files_gateway.url}/uploads/nonsense/out.png", {"x-prediction-id": prediction_id}, 403),
        (upload_url + "out.png", {"x-prediction-id": "nosuchprediction"}, 404),
        (upload_url + "out.png", {}, 400),
    ):
        response = httpx.put(url, content=b"x", headers=headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"


# --- prediction inputs -------------------------------------------------------------------------


async def test_resolve_inputs_turns_own_file_urls_into_fetchable_ones(
    files_gateway: Gateway, files_api: httpx.Client, service: Files, links: Links
) -> None:
    created = _upload(files_api, b"mask bytes", "mask.png", "image/png")
    tenant, elsewhere = _tenant(files_api), f"https://gw.example.com/replicate/v1/files/{created['id']}"
    given = {
        "image": created["urls"]["get"],
        "masks": [{"m": elsewhere}],
        "prompt": "a cat",
        "steps": 4,
        "other": "https://example.com/v1/x.png",
    }
    inputs = InputFiles(service, file_id_in)
    signed = await inputs.resolve(
        tenant, given, lambda file, expires_at: links.file_download(file, "https://public.example.com", expires_at)
    )
    assert signed["image"].startswith(f"https://public.example.com/v1/files/{created['id']}/download/")
    assert signed["masks"][0]["m"].startswith("https://public.example.com/v1/files/")
    assert {k: signed[k] for k in ("prompt", "steps", "other")} == {k: given[k] for k in ("prompt", "steps", "other")}
    expiry = int(signed["image"].split("/")[-3])
    assert time.time() + 3500 < expiry <= time.time() + 3600
    fetchable = signed["image"].replace("https://public.example.com", files_gateway.url)
    assert httpx.get(fetchable).content == b"mask bytes"
    inline = await inputs.resolve(tenant, given, None)
    assert inline["image"] == "data:image/png;base64," + base64.b64encode(b"mask bytes").decode()
    assert inline["masks"][0]["m"] == inline["image"]


async def test_resolve_inputs_refuses_foreign_and_missing_files(
    files_gateway: Gateway, files_api: httpx.Client, service: Files
) -> None:
    created = _upload(files_api)
    given = {"image": created["urls"]["get"], "mask": f"{files_gateway.url}/v1/files/nosuchfile", "seed": 1}
    with pytest.raises(InvalidInput) as caught:
        await InputFiles(service, file_id_in).resolve("another-tenant", given, None)
    assert caught.value.invalid_fields == [
        {"type": "file_not_found", "field": "input.image", "description": f"File {created['id']} not found"},
        {"type": "file_not_found", "field": "input.mask", "description": "File nosuchfile not found"},
    ]


@pytest.mark.parametrize(
    ("url", "file_id"),
    [
        ("https://gw.example.com/v1/files/abc123", "abc123"),
        ("http://127.0.0.1:8000/replicate/v1/files/abc123", "abc123"),
        ("https://gw/v1/files/abc123/download?owner=a&expiry=1&signature=x", "abc123"),
        ("https://gw/v1/files/abc123/download/1700000000/c2lnbmF0dXJl/out-0.png", "abc123"),
        ("https://gw/v1/files/abc123/download/1700000000/out-0.png", None),
        ("https://gw/v1/files", None),
        ("https://gw/v1/predictions/abc123", None),
        ("https://gw/other/v1/files/abc123", None),
        ("data:text/plain;base64,eA==", None),
        ("/v1/files/abc123", None),
    ],
)
def test_file_urls_are_recognised_by_path_on_any_host(url: str, file_id: str | None) -> None:
    assert file_id_in(url) == file_id


# --- expiry ------------------------------------------------------------------------------------


async def test_the_sweeper_deletes_blobs_whose_files_expired_and_keeps_the_rest(files_gateway: Gateway, service: Files) -> None:
    expiring = await service.create("sweep-tenant", Upload(io.BytesIO(b"old"), "old.txt", "text/plain"))
    assert _blob(files_gateway, expiring.id).exists()
    await service.sweep(now=time.time() + 30)
    assert _blob(files_gateway, expiring.id).exists()
    assert await service.sweep(now=time.time() + 61) >= 1
    assert not _blob(files_gateway, expiring.id).exists()
    assert [f.id for f in (await service.list("sweep-tenant", None)).files] == []


async def test_the_gateway_sweeps_expired_files_on_its_own(redis_url: str, files_gateway: Gateway) -> None:
    store = Store.connect(redis_url, prediction_retention_seconds=3600, audit_retention_seconds=3600)
    short_lived = await _files_service(store, files_gateway, expiry_seconds=1)
    file = await short_lived.create("sweep-tenant", Upload(io.BytesIO(b"brief"), "brief.txt"))
    await store.aclose()
    deadline = time.monotonic() + 5
    while _blob(files_gateway, file.id).exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not _blob(files_gateway, file.id).exists()
