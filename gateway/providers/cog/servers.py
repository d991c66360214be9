"""Supervision of the managed Cog model servers: one coglet child process per configured URL.

Each server is coglet run like `python -m cog.server.http` (by `coglet_server.py`, which takes the upload URL
from the environment rather than the command line) in the model directory, in a process group of its own
(coglet runs the model in a child worker, which can outlive a killed parent while a prediction is running),
with its output appended to a log file (owner-only: it carries webhook tokens). A watcher task per server
restarts it after an unexpected exit, backing off while it keeps crashing. Each server's pid is recorded beside
its log, so a start after the gateway was killed stops the server it left holding the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import BinaryIO, NoReturn
from urllib.parse import urlsplit

from gateway import processes
from gateway.errors import ConfigError
from gateway.providers.cog.adapter import Health
from gateway.providers.cog.coglet_server import UPLOAD_URL_ENV

logger = logging.getLogger(__name__)

_LAUNCHER = Path(__file__).with_name("coglet_server.py")
PREDICTOR_REF = "predict.py:Predictor"
_PREDICTOR_FILE = "predict.py"
_POLL_SECONDS = 0.1
_STOP_GRACE_SECONDS = 10.0
_MAX_RESTART_DELAY_SECONDS = 10.0
_STABLE_SECONDS = 30.0  # a server that ran this long before exiting is restarted without backoff
_LOG_TAIL_LINES = 20
_LOG_TAIL_BYTES = 64 * 1024

HealthCheck = Callable[[str], Awaitable[Health]]


class CogServer:
    """One managed server: its URL, command, environment, log file, current process and restart count."""

    def __init__(self, url: str, command: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.url = url
        self.host, self.port = _host_port(url)
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.replaced_left_behind = False  # a server a killed gateway left on this port was stopped at launch
        self.lock = asyncio.Lock()  # serialises restarts by the watcher and by callers
        self._command = command
        self._env = env
        self._cwd = cwd
        self._log_offset = 0
        self._launched_at = 0.0

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid

    def uptime(self) -> float:
        """Seconds since the last launch attempt."""
        return time.monotonic() - self._launched_at

    @property
    def pid_path(self) -> Path:
        return self.log_path.with_suffix(".pid")

    async def launch(self) -> None:
        """Start the process on a free port; its output is appended to the log file."""
        self._launched_at = time.monotonic()
        left_behind = await asyncio.to_thread(processes.reclaim, self.pid_path, [" ".join(self._command[:3])])
        self.replaced_left_behind = self.replaced_left_behind or left_behind is not None
        _check_port_free(self.url, self.host, self.port)
        with _open_private_log(self.log_path) as log:
            self._log_offset = log.tell()
            try:
                self.process = await asyncio.create_subprocess_exec(
                    *self._command, cwd=self._cwd, env=self._env, stdin=asyncio.subprocess.DEVNULL,
                    stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                raise ConfigError(f"cannot start the Cog server for {self.url}: {exc}") from exc
        processes.record(self.pid_path, self.process.pid)

    async def wait_ready(self, health: HealthCheck, timeout: float) -> None:
        """Poll the server's health until it is ready; ConfigError if it exits, fails setup or times out."""
        deadline = time.monotonic() + timeout
        while not (reported := await health(self.url)).status.serving:
            self._check_starting(reported, deadline, timeout)
            await asyncio.sleep(_POLL_SECONDS)

    async def terminate(self, grace: float) -> None:
        """SIGTERM the server, SIGKILL its process group after `grace` seconds, and wait for it to exit."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                _kill_group(process.pid)
        await process.wait()
        _kill_group(process.pid)  # the worker of a killed parent lives on until its prediction ends
        processes.forget(self.pid_path)

    def log_tail(self) -> str:
        """The last lines the current process wrote, coglet's JSON records shown as `LEVEL message`."""
        with self.log_path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(self._log_offset, size - _LOG_TAIL_BYTES))
            lines = log.read().decode(errors="replace").splitlines()
        return "\n".join(_readable(line) for line in lines[-_LOG_TAIL_LINES:])

    def _check_starting(self, health: Health, deadline: float, timeout: float) -> None:
        assert self.process is not None
        if self.process.returncode is not None:
            self._fail(f"exited during start-up with code {self.process.returncode}")
        if health.status.failed:
            self._fail(f"failed its setup ({health.status.value}): {health.setup_logs or 'no setup logs'}")
        if time.monotonic() > deadline:
            self._fail(f"was not ready after {timeout:g}s (status {health.status.value})")

    def _fail(self, reason: str) -> NoReturn:
        raise ConfigError(f"the Cog server for {self.url} {reason}; last output in {self.log_path}:\n{self.log_tail()}")


class CogServerPool:
    """The managed Cog servers of one model directory, started, watched and stopped together.

    `health(server_url)` reads a server's health; `upload_url(server_url)` gives the server's `--upload-url`
    and `webhook_token(server_url)` its `WEBHOOK_AUTH_TOKEN` (sent by coglet as `Authorization: Bearer
    <token>` on webhooks); None means none. `env` adds model settings to the inherited environment; it cannot
    override the variables set here.
    """

    def __init__(
        self,
        model_dir: Path,
        urls: list[str],
        health: HealthCheck,
        *,
        upload_url: Callable[[str], str | None] | None = None,
        webhook_token: Callable[[str], str | None] | None = None,
        python: str = sys.executable,
        log_dir: Path | None = None,
        restart_delay: float = 0.5,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.log_dir = log_dir or model_dir / ".cog" / "logs"
        self.restart_delay = restart_delay
        self._health = health
        self._interpreter = _interpreter(python)
        self._upload_url = upload_url or _none
        self._webhook_token = webhook_token or _none
        self._extra_env = dict(env or {})
        self._servers = {server.url: server for server in map(self._server_for, urls)}
        self._ready_timeout = 60.0
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def servers(self) -> list[CogServer]:
        return list(self._servers.values())

    async def start(self, ready_timeout: float = 60) -> None:
        """Start every server and wait until each is ready; on failure stop them all and raise ConfigError."""
        self._prepare()
        self._ready_timeout = ready_timeout
        try:
            for server in self.servers:
                await server.launch()
            for server in self.servers:
                await server.wait_ready(self._health, ready_timeout)
        except BaseException:
            await self._terminate_all()
            raise
        self._watchers = [asyncio.create_task(self._watch(server)) for server in self.servers]

    async def stop(self) -> None:
        """Stop the watchers (so the exits are not taken for crashes), then every server."""
        # Cancelled again until they end: a timeout helper (asyncio.wait_for before Python 3.12, for one) may swallow
        # a cancellation that arrives as what it waits for completes, and a watcher that missed it would wait on its
        # server forever (a suite once hung here).
        while pending := [watcher for watcher in self._watchers if not watcher.done()]:
            for watcher in pending:
                watcher.cancel()
            await asyncio.wait(pending, timeout=1.0)
        self._watchers = []
        await self._terminate_all()

    async def restart(self, url: str) -> None:
        """Stop the server at `url` and start it again, counted as a restart; returns once it is ready.

        On ConfigError the server is left stopped and the watcher keeps trying to bring it back.
        """
        server = self._get(url)
        async with server.lock:
            await self._relaunch(server)

    def pid(self, url: str) -> int | None:
        return self._get(url).pid

    def restarts(self, url: str) -> int:
        """How many times the server at `url` was started again after its first start."""
        return self._get(url).restarts

    async def _watch(self, server: CogServer) -> None:
        """Restart `server` whenever its process exits on its own; runs until cancelled."""
        delay = self.restart_delay
        while True:
            process = server.process
            assert process is not None
            await process.wait()
            if server.process is not process:  # replaced by restart()
                continue
            if server.uptime() >= _STABLE_SECONDS:
                delay = self.restart_delay
            logger.warning("Cog server %s exited with code %s; restarting in %.1fs", server.url, process.returncode, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RESTART_DELAY_SECONDS)
            await self._recover(server, process)

    async def _recover(self, server: CogServer, exited: asyncio.subprocess.Process) -> None:
        async with server.lock:
            if server.process is not exited:  # restart() got there first
                return
            try:
                await self._relaunch(server)
            except ConfigError as exc:
                logger.error("restart of Cog server %s failed: %s", server.url, exc)

    async def _relaunch(self, server: CogServer) -> None:
        await server.terminate(_STOP_GRACE_SECONDS)
        server.restarts += 1
        await server.launch()
        try:
            await server.wait_ready(self._health, self._ready_timeout)
        except BaseException:
            await server.terminate(_STOP_GRACE_SECONDS)
            raise

    async def _terminate_all(self) -> None:
        await asyncio.gather(*(server.terminate(_STOP_GRACE_SECONDS) for server in self.servers))

    def _prepare(self) -> None:
        if not (self.model_dir / _PREDICTOR_FILE).is_file():
            raise ConfigError(f"the Cog model directory {self.model_dir} has no {_PREDICTOR_FILE} (expected {PREDICTOR_REF})")
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.log_dir.chmod(0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create the Cog server log directory {self.log_dir}: {exc.strerror}") from exc

    def _server_for(self, url: str) -> CogServer:
        url = url.rstrip("/")
        host, port = _host_port(url)
        command = [str(self._interpreter), str(_LAUNCHER), "--host", host]
        return CogServer(url, command, self._env_for(url, port), self.model_dir, self.log_dir / f"cog-{port}.log")

    def _env_for(self, url: str, port: int) -> dict[str, str]:
        # coglet starts its worker as a bare `python` found through PATH, so the interpreter's dir comes first.
        inherited_path = os.environ.get("PATH", os.defpath)
        env = {
            **{name: value for name, value in os.environ.items() if _inheritable(name)},
            **self._extra_env,
            "COG_PREDICT_TYPE_STUB": PREDICTOR_REF,
            "PORT": str(port),
            "PATH": f"{self._interpreter.parent}{os.pathsep}{inherited_path}",
        }
        token = self._webhook_token(url)
        if token:
            env["WEBHOOK_AUTH_TOKEN"] = token
        upload_url = self._upload_url(url)
        if upload_url:  # in the environment, which only the server's user can read, not on its command line
            env[UPLOAD_URL_ENV] = upload_url
        return env

    def _get(self, url: str) -> CogServer:
        try:
            return self._servers[url.rstrip("/")]
        except KeyError:
            raise KeyError(f"no managed Cog server at {url}") from None


# Only the process basics reach model code; the gateway's own settings and upstream tokens never do.
_INHERITED = frozenset({"PATH", "HOME", "USER", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "PYTHONPATH", "VIRTUAL_ENV"})


def _inheritable(name: str) -> bool:
    return name in _INHERITED or name.startswith(("LC_", "OMP_", "OPENBLAS_", "CUDA_", "NVIDIA_"))


def _none(_url: str) -> None:
    return None


def _interpreter(python: str) -> Path:
    """The Python to run the servers with, as a path (not resolved: a venv's python is a symlink)."""
    found = shutil.which(python)
    if found is None:
        raise ConfigError(f"the Python interpreter for the Cog servers was not found: {python}")
    return Path(os.path.abspath(found))


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(f"a managed Cog server URL must look like http://<host>:<port>, not {url!r}")
    return parts.hostname, port


def _check_port_free(url: str, host: str, port: int) -> None:
    """ConfigError if nothing can listen on host:port, e.g. another server already does."""
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does; ignores TIME_WAIT
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot start the Cog server for {url}: {host}:{port}: {exc.strerror}") from exc


def _open_private_log(path: Path) -> BinaryIO:
    """`path` for appending, readable by the owner only (also a log file made before)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "ab")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _readable(line: str) -> str:
    """A coglet JSON log record as `LEVEL message key=value…`; other lines unchanged."""
    try:
        record = json.loads(line)
        fields = dict(record["fields"])
        message = fields.pop("message", "")
        extra = "".join(f" {key}={value}" for key, value in fields.items())
        return f"{record['level']} {message}{extra}"
    except (ValueError, KeyError, TypeError):
        return line
