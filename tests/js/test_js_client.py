"""The official JavaScript client (`replicate` 1.4.0 from npm, run with node) streams through the gateway: it
creates without the `stream` flag and reads `urls.stream` with a bare fetch, no key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.api.test_streams import PROMPT, WORDS
from tests.conftest import STORY, STORY_VERSION, Gateway

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def js_client(node_packages: Path) -> Path:
    return node_packages / "stream.mjs"


def test_the_js_client_streams_a_model(gateway: Gateway, tenant_key: str, js_client: Path) -> None:
    ref = f"{STORY}:{STORY_VERSION}"
    run = subprocess.run(
        ["node", str(js_client), f"{gateway.url}/v1", tenant_key, ref, json.dumps({"prompt": PROMPT})],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert [event["data"] for event in events if event["event"] == "output"] == WORDS
    assert events[-1]["event"] == "done" and all(event["id"] for event in events)
