"""The OpenAI-compatible images API through the official `openai` client, with only its base URL and key changed:
edits on real Cog servers of the demo inpainting model, generations on the emulated Replicate upstream."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.cog.conftest import _free_block
from tests.conftest import INPAINTING_VERSION, ROOT, Gateway, Upstream, gateway_settings, run_gateway
from tests.images import decode_png, mask_png, png_with_square
from tests.servers import free_port
from tests.usage.conftest import settled

EDIT_MODEL, EDIT_VERSION = "test/inpaint", "4d" * 32
PAINT_MODEL = "acme/paint"  # text to image, emulated: the inpainting schema with a fixed image and mask
ORANGE, WHITE = (255, 128, 0), (255, 255, 255)
BOX = (24, 24, 40, 40)


def _catalog(upstream: str, cog_port: int) -> str:
    return f"""
[providers.replicate]
kind = "replicate"
base_url = "{upstream}/v1"
token_env = ["UPSTREAM_TOKEN"]
timeout = 3

[providers.cog]
kind = "cog"
managed = {{ model_dir = "{ROOT / "models" / "inpaint"}", count = 1, base_port = {cog_port} }}
timeout = 5

[[models]]
name = "{EDIT_MODEL}"
price = {{ per_prediction = "0.01" }}

[[models.versions]]
id = "{EDIT_VERSION}"
routes = [{{ provider = "cog" }}]

[[models]]
name = "{PAINT_MODEL}"
defaults = {{ image = "https://example.com/blank.png", mask = "https://example.com/all.png" }}
price = {{ per_prediction = "0.02" }}

[[models.versions]]
id = "{INPAINTING_VERSION}"
schema = "{ROOT}/config/schemas/stable-diffusion-inpainting.json"
routes = [{{ provider = "replicate", version = "{INPAINTING_VERSION}" }}]

[openai.images]
generations = "{PAINT_MODEL}"
edits = "{EDIT_MODEL}"
"""


@pytest.fixture(scope="module")
def images_gateway(redis_url: str, replicate_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("images")
    path = directory / "catalog.toml"
    path.write_text(_catalog(replicate_upstream.url, _free_block(1)))
    settings = gateway_settings(redis_url, path, free_port(), files_dir=directory / "files")
    with run_gateway(settings) as running:
        yield running


@pytest.fixture
def pngs(tmp_path: Path) -> tuple[Path, Path]:
    image, mask = tmp_path / "image.png", tmp_path / "mask.png"
    image.write_bytes(png_with_square(64, 64, ORANGE, WHITE, BOX))
    mask.write_bytes(mask_png(64, 64, BOX))
    return image, mask


def _client(gateway: Gateway, token: str, prefix: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}{prefix}", api_key=token, timeout=90)


def _assert_inpainted(png: bytes) -> None:
    """The white square the mask covers is filled from its orange surroundings; the rest is untouched."""
    image = decode_png(png)
    assert image.size == (64, 64)
    centre = image.pixel(32, 32)
    assert centre != WHITE and all(abs(c - o) <= 40 for c, o in zip(centre, ORANGE, strict=True)), centre
    assert image.pixel(2, 2) == ORANGE


def test_an_edit_inpaints_inside_the_mask_and_answers_b64_json(images_gateway: Gateway, pngs: tuple[Path, Path]) -> None:
    token, key = images_gateway.new_key()
    image, mask = pngs
    with image.open("rb") as image_file, mask.open("rb") as mask_file:
        result = _client(images_gateway, token).images.edit(
            image=image_file, mask=mask_file, prompt="fill it", n=2, response_format="b64_json"
        )
    assert result.created > 0 and len(result.data) == 2
    for item in result.data:
        assert item.url is None and item.b64_json is not None
        _assert_inpainted(base64.b64decode(item.b64_json))
    report = settled(images_gateway.admin, key["tenant"], 1, group_by="model")
    assert [(row["model"], row["predictions"]) for row in report["results"]] == [(EDIT_MODEL, 1)]


def test_an_edit_answers_a_url_that_downloads_the_png(images_gateway: Gateway, pngs: tuple[Path, Path]) -> None:
    token, _ = images_gateway.new_key()
    image, mask = pngs
    with image.open("rb") as image_file, mask.open("rb") as mask_file:
        result = _client(images_gateway, token, "/replicate/v1").images.edit(
            image=image_file, mask=mask_file, prompt="fill it", response_format="url"
        )
    assert len(result.data) == 1 and result.data[0].url is not None
    assert result.data[0].url.startswith(f"{images_gateway.url}/replicate/v1/files/")  # the prefix the request came in on
    _assert_inpainted(httpx.get(result.data[0].url).content)


def test_a_bad_key_is_an_authentication_error(images_gateway: Gateway, pngs: tuple[Path, Path]) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        _client(images_gateway, "r8_not_a_key").images.generate(prompt="a cat")
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"


def test_a_missing_prompt_is_a_bad_request_naming_it(images_gateway: Gateway, pngs: tuple[Path, Path]) -> None:
    token, _ = images_gateway.new_key()
    image, mask = pngs
    with image.open("rb") as image_file, mask.open("rb") as mask_file, pytest.raises(openai.BadRequestError) as caught:
        _client(images_gateway, token).images.edit(image=image_file, mask=mask_file, prompt=openai.omit)
    assert caught.value.param == "prompt" and caught.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as caught:
        _client(images_gateway, token).images.generate(prompt="a cat", size="12 by 12")
    assert caught.value.param == "size"


def test_an_edit_without_a_mask_is_a_bad_request_naming_it(images_gateway: Gateway, pngs: tuple[Path, Path]) -> None:
    token, _ = images_gateway.new_key()
    with pngs[0].open("rb") as image_file, pytest.raises(openai.BadRequestError) as caught:
        _client(images_gateway, token).images.edit(image=image_file, prompt="fill it")
    assert caught.value.param == "mask"


def test_a_generation_runs_the_configured_model_with_the_mapped_input(
    images_gateway: Gateway, replicate_upstream: Upstream
) -> None:
    token, key = images_gateway.new_key()
    result = _client(images_gateway, token).images.generate(
        prompt="a cat", n=2, size="512x768", response_format="b64_json", user="someone"
    )
    assert [base64.b64decode(item.b64_json or "").startswith(b"emulated output ") for item in result.data] == [True, True]
    [sent] = replicate_upstream.requests("POST", "/predictions")
    assert sent.json["input"] == {
        "prompt": "a cat",
        "num_outputs": 2,
        "width": 512,
        "height": 768,
        "image": "https://example.com/blank.png",
        "mask": "https://example.com/all.png",
    }
    links = _client(images_gateway, token).images.generate(prompt="a dog", model=PAINT_MODEL).data
    assert len(links) == 1 and links[0].url is not None
    assert httpx.get(links[0].url).content.startswith(b"emulated output ")
    assert settled(images_gateway.admin, key["tenant"], 2)["totals"]["predictions"] == 2


def test_a_model_outside_the_catalog_is_not_found(images_gateway: Gateway) -> None:
    token, _ = images_gateway.new_key()
    with pytest.raises(openai.NotFoundError) as caught:
        _client(images_gateway, token).images.generate(prompt="a cat", model="dall-e-3")
    assert caught.value.param == "model" and caught.value.code == "model_not_found"


def test_an_operation_without_a_model_is_not_found(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        _client(gateway, gateway.new_key()[0]).images.generate(prompt="a cat")
    assert caught.value.body == {
        "message": "No model serves images/generations on this gateway",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }


def test_rate_and_money_limits_answer_429_and_402_with_their_headers(images_gateway: Gateway) -> None:
    token, key = images_gateway.new_key()
    assert images_gateway.admin.put(f"/keys/{key['key_id']}/limits", json={"creates_per_minute": 1}).status_code == 200
    client = _client(images_gateway, token).with_options(max_retries=0)
    client.images.generate(prompt="a cat")
    with pytest.raises(openai.RateLimitError) as limited:
        client.images.generate(prompt="a cat")
    assert limited.value.code == "rate_limit_exceeded" and int(limited.value.response.headers["retry-after"]) > 0
    broke, broke_key = images_gateway.new_key()
    assert images_gateway.admin.put(f"/keys/{broke_key['key_id']}/limits", json={"prepaid": True}).status_code == 200
    with pytest.raises(openai.APIStatusError) as unpaid:
        _client(images_gateway, broke).with_options(max_retries=0).images.generate(prompt="a cat")
    assert unpaid.value.status_code == 402 and unpaid.value.code == "insufficient_quota"
