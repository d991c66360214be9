"""The images' commands run for real, without a container runtime: the files each stage copies are laid out as
the Dockerfile puts them, and its HEALTHCHECK and CMD run against them as processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN, gateway_process
from tests.deploy.dockerfile import ROOT, Stage, stages
from tests.servers import free_port


def _lay_out(stage: Stage, root: Path) -> None:
    """The files of the build context the stage copies, at their image paths under `root`."""
    for copy in (c for c in stage.copies() if c.from_stage is None):
        destination = root / copy.destination.lstrip("/")
        for source in copy.sources:
            target = destination / Path(source).name if copy.into_directory else destination
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target)
            else:
                shutil.copyfile(ROOT / source, target)


def _exec_form(stage: Stage, keyword: str) -> list[str]:
    arguments = stage.all(keyword)[-1]
    return list(json.loads(arguments.partition("CMD ")[2] if keyword == "HEALTHCHECK" else arguments))


def _healthcheck(command: list[str], env: dict[str, str], cwd: Path) -> int:
    return subprocess.run([sys.executable, *command[1:]], env=env, cwd=cwd, capture_output=True, timeout=30).returncode


def test_the_gateway_starts_on_the_image_catalog_and_its_healthcheck_follows_it(redis_url: str, tmp_path: Path) -> None:
    gateway = stages()["gateway"]
    _lay_out(gateway, tmp_path)
    catalog = tmp_path / gateway.env()["GATEWAY_CATALOG"].lstrip("/")
    check = _exec_form(gateway, "HEALTHCHECK")
    with gateway_process(redis_url, catalog, tmp_path / "data") as (url, _, process):
        env = {**os.environ, "GATEWAY_PORT": url.rsplit(":", 1)[1], "GATEWAY_HOST": "127.0.0.1"}
        assert _healthcheck(check, env, tmp_path) == 0
        listed = httpx.get(f"{url}/admin/v1/providers", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
        assert sorted(provider["name"] for provider in listed["providers"]) == ["inpaint", "replicate"]
    assert process.returncode is not None
    assert _healthcheck(check, env, tmp_path) != 0  # the gateway is gone: unhealthy


def test_the_demo_model_command_serves_models_inpaint(tmp_path: Path) -> None:
    model = stages()["demo-model"]
    _lay_out(model, tmp_path)
    workdir = tmp_path / model.all("WORKDIR")[-1].lstrip("/")
    port = free_port()
    # The image's environment, with this interpreter's directory first on PATH as the image puts its venv first,
    # and the server on loopback rather than every interface.
    env = {
        **os.environ,
        **model.env(),
        "PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    command = [arg if arg != "0.0.0.0" else "127.0.0.1" for arg in _exec_form(model, "CMD")]
    process = subprocess.Popen(
        [sys.executable, *command[1:]], cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while _status(f"http://127.0.0.1:{port}/health-check") != "READY":
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        schema = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
        assert {"image", "mask"} <= set(schema["components"]["schemas"]["Input"]["required"])
    finally:
        process.terminate()
        process.wait(timeout=30)


def _status(url: str) -> str | None:
    try:
        status: str = httpx.get(url).json()["status"]
    except (httpx.TransportError, ValueError):
        return None
    return status
