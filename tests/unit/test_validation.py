import asyncio
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import InvalidInput
from gateway.ssrf import AddressPolicy, IPAddress, UrlGuard
from gateway.validation import InputValidator, UrlPolicy, unsafe_file_reason

SCHEMA = json.loads((Path(__file__).parents[2] / "config" / "schemas" / "stable-diffusion-inpainting.json").read_text())
IMAGE = "https://example.com/image.png"


async def _resolve(host: str) -> list[IPAddress]:
    if host != "example.com":
        raise OSError(f"unknown host {host}")
    return [ipaddress.ip_address("93.184.215.14")]


def _policy(allow_all: bool = False, **extra: Any) -> UrlPolicy:
    return UrlPolicy(UrlGuard(AddressPolicy(allow_all=allow_all), _resolve), **extra)


def _check(given: dict, policy: UrlPolicy | None = None, schema: dict = SCHEMA) -> None:
    validator = InputValidator(schema, policy or _policy())
    validator.validate(given)
    asyncio.run(validator.check_urls(given))


def _fields(given: dict, policy: UrlPolicy | None = None, schema: dict = SCHEMA) -> list[dict[str, str]]:
    with pytest.raises(InvalidInput) as caught:
        _check(given, policy, schema)
    return caught.value.invalid_fields


def test_valid_input_passes() -> None:
    _check({"image": IMAGE, "mask": "data:image/png;base64,AAAA", "num_inference_steps": 25, "scheduler": "DDIM"})


@pytest.mark.parametrize(
    "given,expected",
    [
        ({"mask": IMAGE}, {"type": "required", "field": "input", "description": "image is required"}),
        (
            {"image": IMAGE, "mask": IMAGE, "num_inference_steps": 501},
            {"type": "number_lte", "field": "input.num_inference_steps", "description": "Must be less than or equal to 500"},
        ),
        (
            {"image": IMAGE, "mask": IMAGE, "guidance_scale": 0},
            {"type": "number_gte", "field": "input.guidance_scale", "description": "Must be greater than or equal to 1"},
        ),
        (
            {"image": IMAGE, "mask": IMAGE, "prompt": 5},
            {"type": "invalid_type", "field": "input.prompt", "description": "Invalid type. Expected: string, given: integer"},
        ),
        (
            {"image": IMAGE, "mask": IMAGE, "scheduler": "Euler a"},
            {
                "type": "enum",
                "field": "input.scheduler",
                "description": 'scheduler must be one of the following: "DDIM", "K_EULER", "DPMSolverMultistep", "K_EULER_ANCESTRAL", "PNDM", "KLMS"',
            },
        ),
    ],
)
def test_each_violation_is_reported_in_replicates_words(given: dict, expected: dict) -> None:
    assert _fields(given) == [expected]


def test_detail_lists_every_problem_like_replicate() -> None:
    with pytest.raises(InvalidInput) as caught:
        InputValidator(SCHEMA).validate({"num_inference_steps": 999})
    problem = caught.value.problem()
    assert problem["title"] == "Input validation failed"
    assert problem["detail"] == (
        "- input: image is required\n- input: mask is required\n- input.num_inference_steps: Must be less than or equal to 500\n"
    )


@pytest.mark.parametrize("path", ["/etc/passwd", "file:///etc/passwd", "FILE:/x", "../secrets.png", "ftp://host/x.png"])
def test_local_paths_and_file_uris_are_refused_for_file_inputs(path: str) -> None:
    assert [f["type"] for f in _fields({"image": path, "mask": IMAGE})] == ["unsafe_file"]


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/x.png", "http://localhost:8080/x", "http://10.1.2.3/x", "http://[::1]/x", "http://169.254.169.254/latest"],
)
def test_private_addresses_are_refused_unless_allowed(url: str) -> None:
    assert _fields({"image": url, "mask": IMAGE})[0]["description"] == "URLs on private or loopback addresses are not accepted"
    _check({"image": url, "mask": IMAGE}, _policy(allow_all=True))


def test_the_gateways_own_file_urls_pass_whatever_their_host() -> None:
    policy = _policy(gateway_file=lambda url: "/v1/files/" in url)
    _check({"image": "http://127.0.0.1:8000/v1/files/abc", "mask": IMAGE}, policy)
    assert _fields({"image": "http://127.0.0.1:8000/other", "mask": IMAGE}, policy)[0]["type"] == "unsafe_file"


def test_file_uris_are_refused_even_in_fields_without_a_uri_format() -> None:
    assert unsafe_file_reason("file:///etc/shadow", uri_field=False, policy=_policy(allow_all=True)) is not None
    assert unsafe_file_reason("/just a prompt", uri_field=False, policy=_policy()) is None


PERMISSIVE = {"components": {"schemas": {"Input": {"type": "object", "properties": {}}}}}


def test_urls_anywhere_in_the_input_are_checked_with_or_without_a_schema() -> None:
    given = {"prompt": "http://2130706433/", "extra": [{"deep": ["HTTP://0x7f000001/x"]}], "ok": "see http://127.0.0.1"}
    expected = [
        {"type": "unsafe_file", "field": "input.prompt", "description": "URLs on private or loopback addresses are not accepted"},
        {"type": "unsafe_file", "field": "input.extra", "description": "URLs on private or loopback addresses are not accepted"},
    ]
    assert _fields(given, schema=PERMISSIVE) == expected
    assert _fields({**given, "image": IMAGE, "mask": IMAGE}) == expected


def test_a_url_whose_host_does_not_resolve_is_refused_by_name() -> None:
    assert _fields({"image": "https://nowhere.invalid/x.png", "mask": IMAGE}) == [
        {"type": "unsafe_file", "field": "input.image", "description": "The host nowhere.invalid could not be resolved"}
    ]
