"""Replicate's official MCP server (`replicate-mcp` from npm, run with node) works against the gateway with only
`REPLICATE_BASE_URL` changed: it lists the catalog's models and runs a prediction on the demo model to its end."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import httpx

from tests.cog.conftest import FAST_VERSION, CogGateway

ROOT = Path(__file__).parents[2]


def _inline(name: str) -> str:
    data = (ROOT / "models" / "inpaint" / "examples" / f"{name}.png").read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_the_mcp_server_lists_models_and_runs_the_demo_model(cog_gateway: CogGateway, node_packages: Path) -> None:
    token, _ = cog_gateway.new_key()
    inputs = {"image": _inline("photo"), "mask": _inline("mask"), "prompt": "a cat"}
    run = subprocess.run(
        ["node", str(node_packages / "mcp.mjs"), f"{cog_gateway.url}/v1", token, FAST_VERSION, json.dumps(inputs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert {"list_models", "create_predictions", "get_predictions"} <= set(answer["tools"])
    assert "test/inpaint" in answer["models"]
    prediction = answer["prediction"]
    assert prediction["status"] == "succeeded", prediction
    [output] = prediction["output"]
    assert httpx.get(output, verify=cog_gateway.client_ssl_context(), timeout=10).content.startswith(b"\x89PNG")
