"""Half-sent requests (slowloris) cannot hold the gateway's connections: headers must arrive within the header
deadline, and a body that stalls gets a 408 problem. Against `gateway serve`, the server as it is run."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, gateway_process

DEADLINE_SECONDS = 1.0


@pytest.fixture(scope="module")
def served(redis_url: str, catalog_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    deadlines = {"header_timeout_seconds": str(DEADLINE_SECONDS), "body_timeout_seconds": str(DEADLINE_SECONDS)}
    with gateway_process(redis_url, catalog_path, tmp_path_factory.mktemp("slow"), **deadlines) as (url, _, _):
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def _content_length(head: bytes) -> int:
    for line in head.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("sent", [b"", b"GET /health HT", b"GET /health HTTP/1.1\r\nHost: gw\r\nX-Slow: "])
def test_connections_whose_headers_do_not_arrive_in_time_are_closed(served: tuple[str, int], sent: bytes) -> None:
    sockets = [socket.create_connection(served) for _ in range(50)]
    try:
        for sock in sockets:
            sock.sendall(sent)
        time.sleep(DEADLINE_SECONDS)
        assert all(_closed_by_server(sock, within=2.0) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
    assert httpx.get(f"http://{served[0]}:{served[1]}/health").status_code == 200  # others are served as before


def test_a_keep_alive_connection_is_not_cut_by_the_header_deadline(served: tuple[str, int]) -> None:
    with httpx.Client(base_url=f"http://{served[0]}:{served[1]}") as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
            time.sleep(DEADLINE_SECONDS * 0.6)  # idle between requests is the keep-alive's business


def test_a_body_that_stalls_gets_a_408_problem(served: tuple[str, int]) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    token = httpx.post(f"http://{served[0]}:{served[1]}/admin/v1/keys", json={"tenant": "slow"}, headers=admin).json()["token"]
    with socket.create_connection(served) as sock:
        head = (
            b"POST /v1/predictions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
        )
        sock.sendall(head + b'{"version": ')
        sock.settimeout(DEADLINE_SECONDS * 5)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _content_length(answer):
            chunk = sock.recv(4096)  # the head and the body may arrive in separate segments
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"application/problem+json" in answer and b"did not arrive within 1s" in answer
