import json
from pathlib import Path

import pytest

from gateway.errors import InvalidInput
from gateway.validation import InputValidator, UrlPolicy, unsafe_file_reason

SCHEMA = json.loads((Path(__file__).parents[2] / "config" / "schemas" / "stable-diffusion-inpainting.json").read_text())
IMAGE = "https://example.com/image.png"


def _fields(given: dict, policy: UrlPolicy | None = None) -> list[dict[str, str]]:
    with pytest.raises(InvalidInput) as caught:
        InputValidator(SCHEMA, policy or UrlPolicy()).validate(given)
    return caught.value.invalid_fields


def test_valid_input_passes() -> None:
    InputValidator(SCHEMA).validate(
        {"image": IMAGE, "mask": "data:image/png;base64,AAAA", "num_inference_steps": 25, "scheduler": "DDIM"}
    )


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
    InputValidator(SCHEMA, UrlPolicy(allow_private=True)).validate({"image": url, "mask": IMAGE})


def test_the_gateways_own_file_urls_pass_whatever_their_host() -> None:
    policy = UrlPolicy(gateway_file=lambda url: "/v1/files/" in url)
    InputValidator(SCHEMA, policy).validate({"image": "http://127.0.0.1:8000/v1/files/abc", "mask": IMAGE})
    assert _fields({"image": "http://127.0.0.1:8000/other", "mask": IMAGE}, policy)[0]["type"] == "unsafe_file"


def test_file_uris_are_refused_even_in_fields_without_a_uri_format() -> None:
    assert unsafe_file_reason("file:///etc/shadow", uri_field=False, policy=UrlPolicy(allow_private=True)) is not None
    assert unsafe_file_reason("/just a prompt", uri_field=False, policy=UrlPolicy()) is None
