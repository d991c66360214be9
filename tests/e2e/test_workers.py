"""`gateway serve --workers 2`: two serving processes on one port, one embedded Valkey and one set of model
servers among them; a worker killed is replaced while the port keeps answering; SIGTERM stops everything, and
workers whose supervisor was killed stop on their own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_TOKEN, UPSTREAM_TOKEN
from tests.e2e.test_serve import TYPEWRITER, _shipped_config
from tests.servers import free_port

SHUTDOWN_SECONDS = 10
ASKED = 40


def _kind(process: psutil.Process) -> str:
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:  # exited (a zombie until its parent reaps it)
        return "exited"
    for marker, kind in (
        ("valkey-server", "valkey"),
        ("coglet_server.py", "model server"),
        ("_run_worker", "model worker"),
        ("spawn_main", "worker"),
        ("resource_tracker", "tracker"),
    ):
        if marker in command:
            return kind
    return command


def _children(parent: int) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for child in psutil.Process(parent).children(recursive=True):
        found.setdefault(_kind(child), []).append(child.pid)
    return found


def _workers(parent: int) -> set[int]:
    return {child.pid for child in psutil.Process(parent).children() if _kind(child) == "worker"}


def _refused_reads(url: str) -> float:
    """`gateway_http_requests_total` of unauthenticated reads of the account, as one scrape of `url` shows it."""
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
    requests = next(family for family in families if family.name == "gateway_http_requests")
    return sum(s.value for s in requests.samples if s.labels["status"] == "401" and s.labels["route"].endswith("/account"))


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _serving_pids(port: int, workers: set[int], rounds: int = 10) -> set[int]:
    """Which workers took new connections, over rounds of 40 until every one of `workers` took some: which
    process a connection goes to is up to the kernel and to which worker wakes first."""
    seen: set[int] = set()
    for _ in range(rounds):
        seen |= _serving_round(port, workers)
        if seen == workers:
            break
        time.sleep(0.05)
    return seen


def _serving_round(port: int, workers: set[int], connections: int = 40) -> set[int]:
    """Which workers took `connections` new connections, each held open until all are counted."""
    clients, local_ports = [], set()
    try:
        for _ in range(connections):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            assert client.recv(64).startswith(b"HTTP/1.1 200")
            clients.append(client)
            local_ports.add(client.getsockname()[1])
        return {
            pid
            for pid in workers
            for connection in psutil.Process(pid).net_connections(kind="tcp")
            if connection.raddr and connection.raddr.port in local_ports
        }
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """`gateway serve --workers 2` on embedded defaults: the shipped catalog, one server per managed model."""
    port = free_port()
    catalog = _shipped_config(tmp_path, free_port(), free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "REDIS_URL"))}
    env.update(GATEWAY_CATALOG=str(catalog), GATEWAY_DATA_DIR=str(tmp_path / "data"), GATEWAY_WORKERS="2")
    env.update(GATEWAY_SHUTDOWN_SECONDS=str(SHUTDOWN_SECONDS))
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--model-servers", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _until_ready(process, url, log)
        yield url, process, log
    finally:
        if process.poll() is None:
            process.kill()  # a failed test: leave nothing behind
            for pids in _children_or_none(process.pid).values():
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
        process.wait(30)


def _children_or_none(parent: int) -> dict[str, list[int]]:
    try:
        return _children(parent)
    except psutil.NoSuchProcess:
        return {}


def _until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("gateway serve --workers 2 did not become ready:\n" + log.read_text())


def test_two_workers_share_the_port_and_one_set_of_shared_parts(
    supervised: tuple[str, subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    url, process, log = supervised
    port = int(url.rsplit(":", 1)[1])
    children = _children(process.pid)
    assert len(children["valkey"]) == 1 and len(children["model server"]) == 2  # the inpainting and the typewriter
    assert len(children["worker"]) == 2
    workers = _workers(process.pid)
    assert _serving_pids(port, workers) == workers  # the kernel spreads connections over both

    for _ in range(ASKED):  # each on a connection of its own: both workers answer some
        assert httpx.get(f"{url}/v1/account").status_code == 401
    assert {_refused_reads(url) for _ in range(6)} == {ASKED}  # whichever worker is scraped serves the sum

    key = (tmp_path / "data" / "demo_key").read_text().strip()
    for _ in range(4):  # on either worker, the shared model servers run it
        created = httpx.post(
            f"{url}/v1/predictions",
            json={"version": TYPEWRITER.split(":")[1], "input": {"prompt": "one server set"}},
            headers={"Authorization": f"Bearer {key}", "Prefer": "wait=30"},
            timeout=40,
        )
        assert created.status_code == 201 and created.json()["status"] == "succeeded", created.text
        assert "".join(created.json()["output"]) == "one server set"

    failures: list[str] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            try:
                status = httpx.get(f"{url}/health", timeout=5).status_code
                if status != 200:
                    failures.append(str(status))
            except httpx.TransportError as exc:
                failures.append(repr(exc))
            time.sleep(0.02)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    killed = min(workers)
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while len(replaced := _workers(process.pid)) != 2 or killed in replaced:
        assert time.monotonic() < deadline, _workers(process.pid)
        time.sleep(0.1)
    while _serving_pids(port, replaced, rounds=1) != replaced:  # the new one serves once its app has started
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    stop.set()
    asker.join()
    assert failures == []  # the other worker answered meanwhile
    assert _refused_reads(url) == ASKED  # the killed worker's counts stay in the sums
    after = _children(process.pid)
    assert (after["valkey"], after["model server"]) == (children["valkey"], children["model server"])  # not restarted

    everything = [process.pid, *(pid for pids in after.values() for pid in pids)]
    process.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    assert process.wait(SHUTDOWN_SECONDS + 15) == 0, log.read_text()
    assert time.monotonic() - stopping < SHUTDOWN_SECONDS + 10  # the drain's bound, then the shared parts
    deadline = time.monotonic() + 5  # the last (multiprocessing's tracker) leaves as its supervisor's pipe closes
    while left := [pid for pid in everything if not _gone(pid)]:
        assert time.monotonic() < deadline, [psutil.Process(pid).cmdline() for pid in left]
        time.sleep(0.1)
    output = log.read_text()
    assert "Traceback" not in output and output.count("shutting down: answering") == 2


def test_workers_whose_supervisor_was_killed_stop_on_their_own(redis_url: str, catalog_path: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "REDIS_URL"))},
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_CATALOG": str(catalog_path),
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_DATA_DIR": str(tmp_path),
        "UPSTREAM_TOKEN": UPSTREAM_TOKEN,
        "GATEWAY_SHUTDOWN_SECONDS": "5",
    }
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--workers", "2"]
    with (tmp_path / "serve.log").open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    orphans: list[int] = []
    try:
        _until_ready(process, f"http://127.0.0.1:{port}", tmp_path / "serve.log")
        orphans = [pid for pids in _children(process.pid).values() for pid in pids]
        assert len(orphans) == 3  # two workers and multiprocessing's resource tracker
        process.kill()
        process.wait(10)
        deadline = time.monotonic() + 10
        while [pid for pid in orphans if not _gone(pid)]:
            assert time.monotonic() < deadline, [psutil.Process(pid).cmdline() for pid in orphans if not _gone(pid)]
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in orphans:  # a failed test leaves nothing behind
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health")
