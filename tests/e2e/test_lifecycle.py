"""`gateway serve` owns the processes it starts: the embedded Valkey and the managed Cog servers stop with it on
SIGTERM or SIGINT, are replaced after a `kill -9` of the gateway, the Valkey comes back when it dies, and the
Valkey's data, password and the model servers' logs are readable by their owner only."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ROOT
from tests.images import data_uri, mask_png, png_with_square
from tests.servers import free_port

MODEL_DIR = ROOT / "models" / "inpaint"
VERSION = "3c" * 32
BOX = (24, 24, 40, 40)


def _catalog(path: Path, model_port: int) -> Path:
    path.write_text(
        f"""
[providers.local]
kind = "cog"
managed = {{ model_dir = "{MODEL_DIR}", count = 1, base_port = {model_port}, env = {{ INPAINT_DELAY_SECONDS = "60" }} }}
timeout = 5
run_timeout = 120

[[models]]
name = "test/inpaint"

[[models.versions]]
id = "{VERSION}"
routes = [{{ provider = "local" }}]
"""
    )
    return path


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    data_dir: Path
    log: Path

    def children(self) -> dict[str, int]:
        """The pids of the embedded Valkey and the Cog server, found as descendants of the gateway process."""
        found = {}
        for pid in _descendants(self.process.pid):
            command = _command_line(pid)
            if "valkey-server" in command:
                found["valkey"] = pid
            elif "coglet_server.py" in command:
                found["cog"] = pid
        assert set(found) == {"valkey", "cog"}, (found, self.log.read_text())
        return found

    def redis_port(self) -> int:
        return int(urlsplit((self.data_dir / "redis" / "redis.url").read_text().strip()).port or 0)

    def demo_key(self) -> str:
        return (self.data_dir / "demo_key").read_text().strip()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=40)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return _catalog(tmp_path / "catalog.toml", free_port())


@pytest.fixture
def serve(tmp_path: Path, catalog: Path) -> Iterator[Served]:
    """A `gateway serve` on `tmp_path/data`; anything it leaves behind is killed at the end."""
    started: list[Served] = []
    seen: set[int] = set()
    served = _start(tmp_path, catalog, started, seen)
    try:
        yield served
    finally:
        for each in started:
            if each.process.poll() is None:
                each.process.terminate()
                try:
                    each.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    each.process.kill()
                    each.process.wait()
        # Children of this test only: seen as descendants of its gateways, or recorded in its data directory.
        for pid in seen | _recorded_in(tmp_path / "data"):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _start(tmp_path: Path, catalog: Path, started: list[Served], seen: set[int]) -> Served:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "REDIS_URL"))}
    env.update(GATEWAY_CATALOG=str(catalog), GATEWAY_DATA_DIR=str(tmp_path / "data"))
    log = tmp_path / f"serve-{len(started)}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    served = Served(process, f"http://127.0.0.1:{port}", tmp_path / "data", log)
    started.append(served)
    _until(lambda: _answers(served, "/health") == 200, 60, served)
    seen.update(served.children().values())
    seen.update(_descendants(process.pid))
    return served


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_valkey_and_the_model_servers_once(serve: Served, sig: signal.Signals) -> None:
    everything = set(serve.children().values()) | _descendants(serve.process.pid)
    returncode = serve.stop(sig)
    _until(lambda: not any(_alive(pid) for pid in everything), 5, serve, stopped=True)
    assert returncode == 0, serve.log.read_text()
    output = serve.log.read_text()
    assert "Traceback" not in output and "restarting" not in output.lower(), output
    assert not (serve.data_dir / "redis" / "redis.url").exists()


def test_a_restart_after_kill_9_replaces_what_the_killed_gateway_left_running(
    serve: Served, tmp_path: Path, catalog: Path
) -> None:
    headers = {"Authorization": f"Bearer {serve.demo_key()}"}
    image = {
        "image": data_uri(png_with_square(64, 64, (255, 128, 0), (255, 255, 255), BOX)),
        "mask": data_uri(mask_png(64, 64, BOX)),
    }
    created = httpx.post(f"{serve.url}/v1/predictions", json={"version": VERSION, "input": image}, headers=headers).json()
    _until(lambda: _prediction(serve, created["id"], headers)["status"] == "processing", 10, serve)  # the model sleeps 60 s
    before = set(serve.children().values()) | _descendants(serve.process.pid)
    serve.process.kill()
    serve.process.wait()
    started: list[Served] = []
    again = _start(tmp_path, catalog, started, set())
    try:
        assert "Address already in use" not in again.log.read_text()
        assert not any(_alive(pid) for pid in before)
        # The run died with the old server: it fails now, not at run_timeout.
        _until(lambda: _prediction(again, created["id"], headers)["status"] == "failed", 5, again)
        assert "the gateway was killed" in _prediction(again, created["id"], headers)["error"].lower()
    finally:
        assert again.stop(signal.SIGINT) == 0, again.log.read_text()


def test_the_embedded_valkey_is_private_and_comes_back_when_it_dies(serve: Served) -> None:
    redis_dir = serve.data_dir / "redis"
    assert serve.data_dir.stat().st_mode & 0o777 == 0o700
    assert redis_dir.stat().st_mode & 0o777 == 0o700
    assert _unauthenticated_ping(serve.redis_port()).startswith(b"-NOAUTH")
    [cog_log] = (MODEL_DIR / ".cog" / "logs").glob(f"cog-{_model_port(serve)}.log")
    assert cog_log.stat().st_mode & 0o777 == 0o600
    assert (MODEL_DIR / ".cog" / "logs").stat().st_mode & 0o777 == 0o700
    keys = subprocess.run(
        [sys.executable, "-m", "gateway", "--data-dir", str(serve.data_dir), "keys", "list", "--tenant", "demo"],
        capture_output=True, text=True, timeout=30, env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )  # fmt: skip
    assert keys.returncode == 0 and '"tenant": "demo"' in keys.stdout, keys.stderr

    key = serve.demo_key()
    assert _answers(serve, "/health/ready") == 200
    os.kill(serve.children()["valkey"], signal.SIGKILL)
    _until(lambda: _answers(serve, "/v1/predictions", key) == 200, 5, serve)
    assert _answers(serve, "/health/ready") == 200
    assert serve.stop() == 0


# --- processes, seen through /proc ----------------------------------------------------------------------------


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _recorded_in(data_dir: Path) -> set[int]:
    """The embedded Valkey recorded in `data_dir`, if its command line names that directory."""
    try:
        pid = int((data_dir / "redis" / "redis.pid").read_text())
    except (OSError, ValueError):
        return set()
    return {pid} if str(data_dir) in _command_line(pid) else set()


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _model_port(served: Served) -> int:
    found = re.search(r"base_port = (\d+)", _catalog_text(served))
    assert found is not None
    return int(found.group(1))


def _catalog_text(served: Served) -> str:
    return Path(served.data_dir.parent / "catalog.toml").read_text()


def _unauthenticated_ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(256)


def _answers(served: Served, path: str, key: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        return httpx.get(f"{served.url}{path}", headers=headers, timeout=3).status_code
    except httpx.TransportError:
        return 0


def _prediction(served: Served, prediction_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = httpx.get(f"{served.url}/v1/predictions/{prediction_id}", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _until(condition: Callable[[], bool], seconds: float, served: Served, *, stopped: bool = False) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if not stopped and served.process.poll() is not None:
            raise AssertionError(f"gateway exited with {served.process.returncode}:\n{served.log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds}s:\n{served.log.read_text()}")
        time.sleep(0.1)
