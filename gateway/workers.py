"""`gateway serve --workers N`: a supervisor and N serving processes sharing one listening socket.

Shaped like uvicorn's and gunicorn's supervisors. The supervisor binds the socket once (SO_REUSEADDR) and runs
what all workers share: the managed model servers (the embedded Redis, when there is one, was started before it
by the CLI). It then spawns N workers (fresh interpreters: no event loop or thread is forked), each serving the
app on the inherited socket while the kernel spreads connections among them. Workers open their services
without the model servers, whose addresses come from the same catalog. A worker that dies is replaced. SIGTERM
or SIGINT drains every worker at once, each bounded by GATEWAY_SHUTDOWN_SECONDS and killed after it, and then
the shared parts stop. A worker whose supervisor died (kill -9) drains and exits on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead
from uvicorn.config import STARTUP_FAILURE

from gateway import logs
from gateway.api.app import create_app
from gateway.catalog import Catalog
from gateway.config import CatalogConfig, Settings
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.services import open_model_servers
from gateway.serving import DrainingServer, gateway_server

logger = logging.getLogger(__name__)

_WATCH_SECONDS = 0.2  # how often the supervisor looks for dead workers
_RESTART_PAUSE_SECONDS = 1.0  # the least time between two starts of one worker slot: no crash loop at full speed
_ORPHAN_CHECK_SECONDS = 0.5  # how often a worker looks whether its supervisor still lives
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def supervise(settings: Settings, catalog: CatalogConfig) -> None:
    """Serve with `settings.workers` processes until SIGTERM or SIGINT, which is raised again once all stopped
    (for the caller's own clean-up); GatewayError if a worker cannot start at all."""
    _shared_metrics(settings.data_dir / "metrics")
    with _listening_socket(settings.host, settings.port) as sock:
        stopped_by = asyncio.run(_supervise(settings, catalog, sock))
    if stopped_by is not None:
        signal.raise_signal(stopped_by)


async def _supervise(settings: Settings, catalog: CatalogConfig, sock: socket.socket) -> int | None:
    stop, caught = asyncio.Event(), list[int]()

    def stop_on(sig: int) -> None:
        caught.append(sig)
        stop.set()

    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop_on, sig)
    try:
        async with open_model_servers(settings, Catalog(catalog)):
            workers = _Workers(settings, catalog, sock)
            try:
                while not stop.is_set() and workers.keep_up():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), _WATCH_SECONDS)
            finally:
                await workers.stop(settings.shutdown_seconds)
            if workers.failed_start:
                raise GatewayError("a serving process failed to start (its error is above)")
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            if handler is not None:
                signal.signal(sig, handler)
    return caught[0] if caught else None


class _Workers:
    """The worker processes, one per slot."""

    def __init__(self, settings: Settings, catalog: CatalogConfig, sock: socket.socket) -> None:
        self._settings = settings
        self._catalog = catalog
        self._sock = sock
        self._context = get_context("spawn")
        self._started_at = [0.0] * settings.workers
        self.failed_start = False
        self._slots = [self._spawn(slot) for slot in range(settings.workers)]

    def keep_up(self) -> bool:
        """Replace the workers that died; False when one failed to start (the app cannot run: stop)."""
        for slot, process in enumerate(self._slots):
            if process.is_alive() or time.monotonic() - self._started_at[slot] < _RESTART_PAUSE_SECONDS:
                continue
            process.join()
            if process.pid is not None:
                mark_process_dead(process.pid)  # type: ignore[no-untyped-call]  # its live gauges leave the sums; its counters stay
            if process.exitcode == STARTUP_FAILURE:
                self.failed_start = True
                return False
            logger.warning("serving process %s exited with code %s; starting another", process.pid, process.exitcode)
            self._slots[slot] = self._spawn(slot)
        return True

    async def stop(self, seconds: float) -> None:
        """SIGTERM every worker; SIGKILL those still running after `seconds`."""
        for process in self._slots:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + seconds
        while any(process.is_alive() for process in self._slots) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for process in self._slots:
            if process.is_alive():
                logger.warning("serving process %s did not stop within %g s: killed", process.pid, seconds)
                process.kill()
            process.join()

    def _spawn(self, slot: int) -> BaseProcess:
        self._started_at[slot] = time.monotonic()
        args = (self._settings, self._catalog, self._sock, os.getpid())
        process = self._context.Process(target=serve_worker, args=args, name=f"gateway-worker-{slot}")
        process.start()
        return process


def _shared_metrics(directory: Path) -> None:
    """A fresh directory for the workers' metric files (counts of an earlier run would be added in), named to
    prometheus_client in the environment the workers inherit, which is how it is configured."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)


@contextlib.contextmanager
def _listening_socket(host: str, port: int) -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart binds while old sockets linger
        sock.bind((host, port))
        sock.set_inheritable(True)
        yield sock
    finally:
        sock.close()


def serve_worker(settings: Settings, catalog: CatalogConfig, sock: socket.socket, supervisor: int) -> None:
    """A worker process: the app on the supervisor's socket, until SIGTERM or the supervisor's death."""
    logs.configure(settings.log_level, settings.log_format)
    app = create_app(settings, Catalog(catalog), runs_model_servers=False, recorder=Metrics(shared=True))
    server = gateway_server(app, settings)
    threading.Thread(target=_drain_when_orphaned, args=(server, supervisor), daemon=True).start()
    server.run(sockets=[sock])


def _drain_when_orphaned(server: DrainingServer, supervisor: int) -> None:
    while os.getppid() == supervisor:
        time.sleep(_ORPHAN_CHECK_SECONDS)
    server.should_exit = True  # read by the server's loop on its next tick
