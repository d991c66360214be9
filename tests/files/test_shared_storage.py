"""Two `gateway serve` processes on one Redis and one S3 bucket: a file uploaded through one, or a local model's
output stored by one, is read through the other; the bucket unreachable is a 503 (at start: a clear refusal)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import replicate

from tests.conftest import ADMIN_TOKEN, ROOT, gateway_process
from tests.files.object_store import ACCESS_KEY_ID, SECRET_ACCESS_KEY, ObjectStore, object_store
from tests.images import data_uri, decode_png, mask_png, png_with_square
from tests.servers import free_port

INPAINT_VERSION = "1a" * 32
ORANGE, WHITE, BOX = (255, 128, 0), (255, 255, 255), (24, 24, 40, 40)
SECRETS = (SECRET_ACCESS_KEY, ACCESS_KEY_ID, ADMIN_TOKEN)


@dataclass(frozen=True)
class Pair:
    """Two gateway processes sharing a Redis and a bucket (but not a disk); the first runs a local Cog model."""

    first: str
    second: str
    bucket: str
    s3: ObjectStore

    def new_key(self) -> str:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        response = httpx.post(f"{self.first}/admin/v1/keys", json={"tenant": f"t-{os.urandom(5).hex()}"}, headers=admin)
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def _cog_catalog(path: Path) -> Path:
    path.write_text(f"""
[providers.cog-local]
kind = "cog"
managed = {{ model_dir = "{ROOT / "models" / "inpaint"}", count = 1, base_port = {free_port()} }}
timeout = 5

[[models]]
name = "test/inpaint"

[[models.versions]]
id = "{INPAINT_VERSION}"
routes = [{{ provider = "cog-local" }}]
""")
    return path


def _s3_settings(s3: ObjectStore, bucket: str) -> dict[str, str]:
    return {"file_storage": f"s3://{bucket}/files", "s3_endpoint_url": s3.url, "public_base_url": "self"}


@pytest.fixture(scope="module")
def pair(redis_url: str, catalog_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("shared")
    with object_store(root) as s3, pytest.MonkeyPatch.context() as env:
        for name, value in s3.environ().items():
            env.setenv(name, value)
        bucket = s3.new_bucket()
        cog_catalog = _cog_catalog(root / "cog-catalog.toml")
        with (
            gateway_process(redis_url, cog_catalog, root / "first", **_s3_settings(s3, bucket)) as (first, first_output, _),
            gateway_process(redis_url, catalog_path, root / "second", **_s3_settings(s3, bucket)) as (second, second_output, _),
        ):
            yield Pair(first, second, bucket, s3)
    for line in first_output + second_output:
        assert not any(secret in line for secret in SECRETS), line


def _api(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{base}/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_a_file_uploaded_through_one_process_is_read_through_the_other(pair: Pair, tmp_path: Path) -> None:
    token, data = pair.new_key(), os.urandom(300_000)
    (tmp_path / "photo.bin").write_bytes(data)
    transport = httpx.HTTPTransport()
    try:  # the unmodified Python client, on the first process
        created = replicate.Client(api_token=token, base_url=pair.first, transport=transport).files.create(tmp_path / "photo.bin")
    finally:
        transport.close()
    with _api(pair.second, token) as second:
        shown = second.get(f"/files/{created.id}")
        assert (shown.status_code, shown.json()["size"], shown.json()["checksums"]) == (200, len(data), created.checksums)
        download = second.get(f"/files/{created.id}/download")
        assert (download.status_code, download.content) == (200, data)
    # The bucket holds it under the prefix; neither process's data directory does.
    assert pair.s3.client().head_object(Bucket=pair.bucket, Key=f"files/{created.id}")["ContentLength"] == len(data)


def test_another_tenant_cannot_read_a_shared_file_on_either_process(pair: Pair) -> None:
    owner, other = pair.new_key(), pair.new_key()
    with _api(pair.first, owner) as first:
        file_id = first.post("/files", files={"content": ("a.txt", b"private", "text/plain")}).json()["id"]
    for base in (pair.first, pair.second):
        with _api(base, other) as stranger:
            for path in (f"/files/{file_id}", f"/files/{file_id}/download"):
                response = stranger.get(path)
                assert (response.status_code, response.json()["detail"]) == (404, "File not found")


def _inpaint_input() -> dict[str, Any]:
    image = png_with_square(64, 64, ORANGE, WHITE, BOX)
    return {"image": data_uri(image), "mask": data_uri(mask_png(64, 64, BOX)), "prompt": "fill it", "num_inference_steps": 5}


def _finished(api: httpx.Client, prediction_id: str, timeout: float = 90) -> dict[str, Any]:
    """The prediction once terminal (the model server may still be starting when the gateway answers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = api.get(f"/predictions/{prediction_id}").json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"prediction {prediction_id} did not finish: {body}")


def test_a_local_models_output_stored_by_one_process_is_downloaded_through_the_other(pair: Pair) -> None:
    token = pair.new_key()
    with _api(pair.first, token) as first:
        created = first.post("/predictions", json={"version": INPAINT_VERSION, "input": _inpaint_input()})
        assert created.status_code == 201, created.text
        done = _finished(first, created.json()["id"])
    assert done["status"] == "succeeded", done.get("error")
    [url] = done["output"]
    assert url.startswith(f"{pair.first}/v1/files/")
    output = httpx.get(pair.second + url.removeprefix(pair.first))  # the signed URL, no key, on the other process
    assert output.status_code == 200 and output.headers["content-type"] == "image/png"
    assert decode_png(output.content).pixel(2, 2) == ORANGE


def test_an_unreachable_bucket_is_a_503_problem_not_a_500(redis_url: str, catalog_path: Path, tmp_path: Path) -> None:
    with object_store(tmp_path) as s3, pytest.MonkeyPatch.context() as env:
        for name, value in s3.environ().items():
            env.setenv(name, value)
        with gateway_process(redis_url, catalog_path, tmp_path / "gw", **_s3_settings(s3, s3.new_bucket())) as (url, output, _):
            token = Pair(url, url, "", s3).new_key()
            with _api(url, token) as api:
                file_id = api.post("/files", files={"content": ("a.txt", b"kept", "text/plain")}).json()["id"]
                s3.stop()
                for response in (
                    api.get(f"/files/{file_id}/download"),
                    api.post("/files", files={"content": ("b.txt", b"lost", "text/plain")}),
                ):
                    assert response.status_code == 503
                    assert response.headers["content-type"] == "application/problem+json"
                    assert response.json() == {
                        "title": "Service unavailable",
                        "detail": "The gateway's file storage is failing (EndpointConnectionError)",
                        "status": 503,
                    }
    assert not any(secret in line for line in output for secret in SECRETS)


def test_a_gateway_refuses_to_start_without_its_bucket(redis_url: str, catalog_path: Path, tmp_path: Path) -> None:
    with object_store(tmp_path) as s3:
        env = {
            **os.environ,
            **s3.environ(),
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_CATALOG": str(catalog_path),
            "GATEWAY_DATA_DIR": str(tmp_path / "gw"),
            "GATEWAY_PORT": str(free_port()),
            "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "GATEWAY_FILE_STORAGE": "s3://missing-bucket/files",
            "GATEWAY_S3_ENDPOINT_URL": s3.url,
        }
        ended = subprocess.run([sys.executable, "-m", "gateway", "serve"], env=env, capture_output=True, timeout=30, check=False)
    output = (ended.stdout + ended.stderr).decode(errors="replace")
    assert ended.returncode != 0
    assert f"The file storage bucket s3://missing-bucket/files is not reachable at {s3.url} (404)" in output
    assert not any(secret in output for secret in SECRETS)
