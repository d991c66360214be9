"""The README's run command: `gateway serve` on embedded defaults, then the snippet it prints, as a newcomer would."""

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import replicate

from tests.conftest import ROOT
from tests.images import decode_png
from tests.servers import free_port

TYPEWRITER = "gateway-demo/typewriter:7c86156f824eb0b154d8319616baf9a14cf9309455c2ee15a9a091e450cd3fd3"


def _shipped_config(tmp_path: Path, base_port: int, typewriter_port: int) -> Path:
    """The shipped config directory, with the demo servers moved to free ports and the model dirs made absolute."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    catalog = config / "catalog.toml"
    text = catalog.read_text().replace('"../models/', f'"{ROOT / "models"}/')
    text = text.replace("base_port = 5100", f"base_port = {base_port}")
    catalog.write_text(text.replace("base_port = 5200", f"base_port = {typewriter_port}"))
    return catalog


def test_serve_runs_the_demo_model_end_to_end_and_stops_everything(tmp_path: Path) -> None:
    port, model_port, typewriter_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "REDIS_URL"))}
    catalog = _shipped_config(tmp_path, model_port, typewriter_port)
    env.update(GATEWAY_CATALOG=str(catalog), GATEWAY_DATA_DIR=str(tmp_path / "data"))
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--model-servers", "1"]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        _until_ready(process, f"http://127.0.0.1:{port}/health", log)
        printed = log.read_text()
        assert (tmp_path / "data" / "admin_token").stat().st_mode & 0o777 == 0o600
        snippet = printed[printed.index("import replicate") : printed.index("))", printed.index("import replicate")) + 2]
        result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        [url] = re.findall(r"'(http://[^']+)'", result.stdout)
        image = decode_png(httpx.get(url).content)
        assert image.pixel(64, 64) != (255, 255, 255)  # the white blemish under the mask is gone
        key = (tmp_path / "data" / "demo_key").read_text().strip()
        _seed_request_runs_locally(f"http://127.0.0.1:{port}", key)
        client = replicate.Client(api_token=key, base_url=f"http://127.0.0.1:{port}")
        words = [str(event) for event in client.stream(TYPEWRITER, input={"prompt": "streams on a laptop"})]
        assert "".join(words) == "streams on a laptop"  # the streaming demo model, word by word
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    output = log.read_text()
    assert process.returncode == 0, output
    assert "Traceback" not in output
    for secret in ("admin_token", "demo_key"):  # the paths are printed, never the secrets (stdout is no terminal)
        assert (tmp_path / "data" / secret).read_text().strip() not in output
    assert not list((tmp_path / "data" / "redis").glob("redis.url"))  # the embedded server was stopped
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{model_port}/health-check")  # and so was the model server


def _seed_request_runs_locally(gateway: str, key: str) -> None:
    """The seeds' own request (body as documented, image and mask inline: no host is reachable from here) on the
    aggregator path, with no Replicate token: the catalog routes it to the local demo model."""
    examples = ROOT / "models" / "inpaint" / "examples"
    inline = {
        name: "data:image/png;base64," + base64.b64encode((examples / f"{name}.png").read_bytes()).decode()
        for name in ("photo", "mask")
    }
    body = {
        "version": "95b7223104132402a9ae91cc677285bc5eb997834bd2349fa486f53910fd68b3",
        "input": {
            "mask": inline["mask"],
            "image": inline["photo"],
            "width": 512,
            "height": 512,
            "prompt": "Face of a yellow cat, high resolution, sitting on a park bench",
            "scheduler": "DPMSolverMultistep",
            "num_outputs": 1,
            "guidance_scale": 7.5,
            "num_inference_steps": 25,
        },
    }
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=f"{gateway}/replicate/v1", headers=headers, timeout=60) as api:
        created = api.post("/predictions", json=body)
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 60
        while (prediction := api.get(f"/predictions/{created.json()['id']}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, prediction
            time.sleep(0.2)
        assert prediction["status"] == "succeeded", prediction
        image = decode_png(httpx.get(prediction["output"][0]).content)
        assert image.pixel(64, 64) != (255, 255, 255)  # inpainted
        not_a_multiple = api.post("/predictions", json={**body, "input": {**body["input"], "width": 500}})
        assert not_a_multiple.status_code == 422 and "width" in not_a_multiple.text  # still the version's schema


def _until_ready(process: subprocess.Popen[str], health_url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(health_url).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("gateway serve did not become ready:\n" + log.read_text())
