"""Replicate's Stainless-generated TypeScript client (`replicate-stainless` from npm, run with node) works against
the gateway on both API prefixes with only its base URL changed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gateway.api.app import API_PREFIXES
from tests.conftest import INPAINTING, INPAINTING_VERSION, Gateway, inpainting_input

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def stainless_client(node_packages: Path) -> Path:
    return node_packages / "stainless.mjs"


@pytest.mark.parametrize("prefix", API_PREFIXES)
def test_the_stainless_client_predicts_reads_and_uploads(gateway: Gateway, stainless_client: Path, prefix: str) -> None:
    token, key = gateway.new_key()
    command = ["node", str(stainless_client), f"{gateway.url}{prefix}", token, INPAINTING_VERSION, json.dumps(inpainting_input())]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    with gateway.client(token, prefix) as api:
        assert seen["created"]["status"] == "succeeded" and seen["got"] == api.get(f"/predictions/{seen['created']['id']}").json()
        assert seen["listed"] == [seen["created"]["id"]]
        assert seen["model"] == api.get(f"/models/{INPAINTING}").json()
        assert seen["account"] == {"type": "organization", "username": key["tenant"], "name": key["tenant"]}
        assert seen["file"] == api.get(f"/files/{seen['file']['id']}").json()
    # Form fields carry strings only: numbers and booleans arrive as their text.
    assert seen["file"]["metadata"] == {"purpose": "mask", "n": "1", "tags": ["a", "b"], "limits": {"size": "2", "exact": "true"}}
    assert seen["file"]["urls"]["get"].startswith(f"{gateway.url}{prefix}/files/")
