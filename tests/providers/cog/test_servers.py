"""Managed Cog servers: real coglet servers of models/inpaint started, crashed, restarted and stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import gateway.providers.cog.servers
from gateway.errors import ConfigError
from gateway.providers.cog import CogAdapter, CogServerPool, Health
from gateway.providers.http import UpstreamClient
from tests.images import colour_distance, data_uri, from_data_uri, mask_png, pixel, png_with_square
from tests.servers import free_port, serve_in_thread

in_module_loop = pytest.mark.asyncio(loop_scope="module")  # the loop the shared pool's watchers run in

MODEL_DIR = Path(__file__).parents[3] / "models" / "inpaint"
ORANGE = (255, 128, 0)
SQUARE = (24, 24, 40, 40)
UPLOADED_LOCATION = "https://files.example/out-1.png"


@dataclass
class Receiver:
    """What the Cog servers sent back: webhooks (POST /hook) and uploads (PUT /upload/...)."""

    url: str = ""
    hooks: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    uploads: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


def _receiver_app(receiver: Receiver) -> Starlette:
    async def hook(request: Request) -> Response:
        receiver.hooks.append((dict(request.headers), await request.json()))
        return Response(status_code=200)

    async def upload(request: Request) -> Response:
        receiver.uploads.append((request.url.path, dict(request.headers), await request.body()))
        return Response(status_code=201, headers={"Location": UPLOADED_LOCATION})

    return Starlette(routes=[Route("/hook", hook, methods=["POST"]), Route("/upload/{name}", upload, methods=["PUT"])])


def _token(url: str) -> str:
    return f"token-for-{url.rsplit(':', 1)[1]}"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    received = Receiver()
    with serve_in_thread(_receiver_app(received)) as url:
        received.url = url
        yield received


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CogServerPool]:
    """Two servers: the first answers inline, the second uploads its outputs to the receiver."""
    urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    servers = CogServerPool(
        MODEL_DIR, urls, _health_check, upload_url=_upload_to(receiver, urls[1]), webhook_token=_token,
        log_dir=tmp_path_factory.mktemp("cog-logs"), restart_delay=0.1,
    )  # fmt: skip
    await servers.start(ready_timeout=30)
    yield servers
    await servers.stop()


def _upload_to(receiver: Receiver, uploading_url: str) -> Callable[[str], str | None]:
    return lambda url: f"{receiver.url}/upload/" if url == uploading_url else None


def _inpainting_input() -> dict[str, str]:
    image = png_with_square(64, 64, ORANGE, (255, 255, 255), SQUARE)
    return {"image": data_uri(image), "mask": data_uri(mask_png(64, 64, SQUARE)), "prompt": "fill it"}


async def _health_check(url: str) -> Health:
    """A server's health read the way the gateway reads it."""
    adapter = CogAdapter(UpstreamClient(2.0, 4), {})
    try:
        return await adapter.health(url)
    finally:
        await adapter.aclose()


async def _health(url: str) -> str | None:
    async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
        try:
            return str((await client.get(f"{url}/health-check")).json()["status"])
        except httpx.HTTPError:
            return None


async def _predict(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=20) as client:
        return await client.post(f"{url}/predictions", json=body, headers=headers)


async def _eventually(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _until_ready(url: str, timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await _health(url) != "READY":
        assert asyncio.get_running_loop().time() < deadline, f"{url} not ready in time"
        await asyncio.sleep(0.05)


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):  # it exited meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


@in_module_loop
async def test_start_makes_every_server_ready(pool: CogServerPool) -> None:
    for server in pool.servers:
        assert await _health(server.url) == "READY"
        assert pool.restarts(server.url) == 0
        assert "Server ready" in server.log_path.read_text()
    pids = [pool.pid(server.url) for server in pool.servers]
    assert None not in pids and len(set(pids)) == 2


@in_module_loop
async def test_each_server_runs_in_its_own_group_with_its_worker(pool: CogServerPool) -> None:
    for server in pool.servers:
        pid = pool.pid(server.url)
        assert pid is not None and os.getpgid(pid) == pid
        assert len(_group_members(pid)) == 2  # the HTTP server and coglet's Python worker


@in_module_loop
async def test_sync_prediction_inpaints_the_masked_square(pool: CogServerPool) -> None:
    response = await _predict(pool.servers[0].url, {"input": _inpainting_input()})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", body
    [output] = body["output"]
    centre = pixel(from_data_uri(output), 32, 32)
    assert colour_distance(centre, ORANGE) <= 8, centre


@in_module_loop
async def test_outputs_go_to_the_upload_url(pool: CogServerPool, receiver: Receiver) -> None:
    response = await _predict(pool.servers[1].url, {"input": _inpainting_input()})

    assert response.json()["output"] == [UPLOADED_LOCATION]
    [(path, headers, png)] = receiver.uploads
    assert path.startswith("/upload/")
    assert headers["content-type"] == "image/png"
    assert headers["x-prediction-id"] == response.json()["id"]
    assert colour_distance(pixel(png, 32, 32), ORANGE) <= 8


@in_module_loop
async def test_webhooks_carry_the_servers_token(pool: CogServerPool, receiver: Receiver) -> None:
    url = pool.servers[0].url
    body = {"input": _inpainting_input(), "webhook": f"{receiver.url}/hook", "webhook_events_filter": ["completed"]}

    response = await _predict(url, body, {"Prefer": "respond-async"})

    assert response.status_code == 202, response.text
    await _eventually(lambda: any(payload["id"] == response.json()["id"] for _, payload in receiver.hooks))
    [(headers, payload)] = [hook for hook in receiver.hooks if hook[1]["id"] == response.json()["id"]]
    assert payload["status"] == "succeeded"
    assert headers["authorization"] == f"Bearer {_token(url)}"


@in_module_loop
async def test_a_killed_server_is_restarted_with_backoff(pool: CogServerPool, caplog: pytest.LogCaptureFixture) -> None:
    url = pool.servers[1].url
    caplog.set_level(logging.WARNING, logger="gateway.providers.cog.servers")

    for crashes in (1, 2):
        await _kill_and_await_restart(pool, url, crashes)

    # (the second kill may land while the watcher still polls for readiness: it then also logs an ERROR)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "gateway.providers.cog.servers"]
    assert [record.getMessage() for record in warnings] == [
        f"Cog server {url} exited with code -9; restarting in 0.1s",
        f"Cog server {url} exited with code -9; restarting in 0.2s",
    ]
    assert pool.restarts(pool.servers[0].url) == 0


async def _kill_and_await_restart(pool: CogServerPool, url: str, restarts: int) -> None:
    old_pid = _running_pid(pool, url)
    os.killpg(old_pid, signal.SIGKILL)
    await _eventually(lambda: pool.pid(url) not in (None, old_pid) and pool.restarts(url) == restarts)
    await _until_ready(url)


async def test_restart_then_stop_leaves_no_processes(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    servers = CogServerPool(MODEL_DIR, [url], _health_check, log_dir=tmp_path)
    await servers.start(ready_timeout=30)
    first = _running_pid(servers, url)

    await servers.restart(url)
    second = _running_pid(servers, url)
    assert second != first and servers.restarts(url) == 1
    assert await _health(url) == "READY"
    await servers.stop()

    assert servers.pid(url) is None
    await _eventually(lambda: not _group_members(first) and not _group_members(second), timeout=5)
    assert capfd.readouterr() == ("", "")  # server output goes to the log file only
    assert (tmp_path / f"cog-{url.rsplit(':', 1)[1]}.log").read_text().count("Server ready") == 2


def _running_pid(servers: CogServerPool, url: str) -> int:
    pid = servers.pid(url)
    assert pid is not None
    return pid


async def test_a_model_dir_without_predict_py_is_refused(tmp_path: Path) -> None:
    servers = CogServerPool(tmp_path, [f"http://127.0.0.1:{free_port()}"], _health_check, log_dir=tmp_path / "logs")

    with pytest.raises(ConfigError, match=r"has no predict\.py"):
        await servers.start(ready_timeout=10)


async def test_a_failing_setup_stops_the_start_and_shows_the_error(tmp_path: Path) -> None:
    (tmp_path / "predict.py").write_text(
        "from cog import BasePredictor\n\n"
        "class Predictor(BasePredictor):\n"
        "    def setup(self) -> None:\n"
        "        raise RuntimeError('weights are missing')\n\n"
        "    def predict(self, text: str) -> str:\n"
        "        return text\n"
    )
    url = f"http://127.0.0.1:{free_port()}"
    servers = CogServerPool(tmp_path, [url], _health_check, log_dir=tmp_path / "logs")

    with pytest.raises(ConfigError, match="failed its setup") as failure:
        await servers.start(ready_timeout=20)

    assert "weights are missing" in str(failure.value)
    assert servers.pid(url) is None
    assert await _health(url) is None


def _fake_python(path: Path) -> Path:
    """A stand-in interpreter that prints its arguments, directory and environment, then exits with code 3."""
    path.parent.mkdir()
    names = ("PATH", "COG_PREDICT_TYPE_STUB", "PORT", "WEBHOOK_AUTH_TOKEN", "MODEL_SETTING", "COG_UPLOAD_URL")
    shown = "".join(f'echo "{name}=${name}"\n' for name in names)
    path.write_text(f'#!/bin/sh\necho "args: $*"\necho "cwd: $(pwd)"\n{shown}exit 3\n')
    path.chmod(0o755)
    return path


async def test_the_command_environment_and_exit_show_in_the_error(tmp_path: Path) -> None:
    fake_python = _fake_python(tmp_path / "bin" / "python")
    url = f"http://127.0.0.1:{free_port()}"
    servers = CogServerPool(
        MODEL_DIR, [url], _health_check, upload_url=lambda _: "http://files.test/up/", webhook_token=lambda _: "s3cret",
        python=str(fake_python), log_dir=tmp_path / "logs", env={"MODEL_SETTING": "on", "PORT": "1"},
    )  # fmt: skip

    with pytest.raises(ConfigError, match="exited during start-up with code 3") as failure:
        await servers.start(ready_timeout=10)

    lines = str(failure.value).splitlines()
    launcher = Path(gateway.providers.cog.servers.__file__).with_name("coglet_server.py")
    assert f"args: {launcher} --host 127.0.0.1" in lines  # the upload URL, a capability, is not in `ps`
    assert f"cwd: {MODEL_DIR}" in lines
    assert f"PATH={fake_python.parent}:{os.environ['PATH']}" in lines
    port = url.rsplit(":", 1)[1]
    expected = {
        "COG_PREDICT_TYPE_STUB=predict.py:Predictor",
        f"PORT={port}",
        "WEBHOOK_AUTH_TOKEN=s3cret",
        "MODEL_SETTING=on",
        "COG_UPLOAD_URL=http://files.test/up/",
    }
    assert expected <= set(lines)
    assert "WEBHOOK_AUTH_TOKEN" not in os.environ


async def test_a_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        servers = CogServerPool(MODEL_DIR, [f"http://127.0.0.1:{port}"], _health_check, log_dir=tmp_path)

        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: Address already in use"):
            await servers.start(ready_timeout=10)


@pytest.mark.parametrize("url", ["https://127.0.0.1:5000", "http://127.0.0.1", "http://127.0.0.1:5000/v1", "127.0.0.1:5000"])
def test_a_url_that_is_not_http_host_port_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="must look like http://<host>:<port>"):
        CogServerPool(MODEL_DIR, [url], _health_check)
