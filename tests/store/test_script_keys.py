"""Every key a Lua script touches is one the caller passed in KEYS, as a cluster requires (a script that builds key
names itself may meet a key another node holds). Watched with MONITOR on a server of its own: each command a
script runs is checked, with COMMAND GETKEYS, against the keys of the EVALSHA that ran it, while the slot queue
is worked through every operation and a gateway runs a metered, rate-limited prediction to its end."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway.store import QueueStore
from gateway.store.embedded import EmbeddedRedis
from gateway.store.redis import connect
from tests.conftest import gateway_settings, run_gateway
from tests.servers import free_port
from tests.usage.conftest import create_body, finished

_ARGUMENT = re.compile(r'"((?:[^"\\]|\\.)*)"')


class Watcher:
    """The commands MONITOR shows, as `(client kind, arguments)`: kind `lua` for those a script ran."""

    def __init__(self, url: str) -> None:
        self.commands: list[tuple[str, list[str]]] = []
        self._client = redis.Redis.from_url(url, decode_responses=True)
        self._monitor = self._client.monitor()
        self._monitor.__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        connection = self._monitor.connection
        while True:
            try:
                line = str(connection.read_response())
            except (redis.ConnectionError, ValueError, OSError):
                return
            kind = "lua" if "[0 lua]" in line else "client"
            self.commands.append((kind, [re.sub(r"\\(.)", r"\1", a) for a in _ARGUMENT.findall(line)]))

    def undeclared(self) -> list[str]:
        """Script commands that touched a key their EVALSHA did not pass."""
        found, declared = [], set[str]()
        for kind, args in list(self.commands):
            if kind == "client" and args and args[0].upper() in ("EVALSHA", "EVAL"):
                declared = set(args[3 : 3 + int(args[2])])
            elif kind == "lua":
                keys = self._keys(args)
                if not keys <= declared:
                    found.append(f"{args[0]} {sorted(keys - declared)}")
        return found

    def _keys(self, args: list[str]) -> set[str]:
        try:
            return {str(key) for key in self._client.command_getkeys(*args)}
        except redis.ResponseError:  # a command without keys (TIME, PUBLISH)
            return set()

    def close(self) -> None:
        self._monitor.connection.disconnect()
        self._client.close()


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[str, Watcher]]:
    with EmbeddedRedis(tmp_path / "redis") as server:
        watcher = Watcher(server.url)
        try:
            yield server.url, watcher
        finally:
            watcher.close()


async def _work_the_queue(url: str) -> None:
    client = connect(url)
    first, second = QueueStore(client, "watched"), QueueStore(client, "watched")
    for tenant, prediction_id in (("t1", "a"), ("t1", "b"), ("t2", "c")):
        await first.push(tenant, prediction_id)
    assert await first.claim() == "a"
    await first.push_front("a")
    assert await first.claim() == "a"
    assert await first.retry_later("a", max_attempts=3)
    assert await second.claim() == "c"
    second.consumer, first.consumer = first.consumer, second.consumer  # the other's lease is not renewed
    await client.delete(f"gw:queue:{{watched}}:alive:{first.consumer}")
    assert await second.recover() == 1
    await first.depth()
    await client.aclose()


async def test_scripts_touch_only_the_keys_they_are_given(
    watched: tuple[str, Watcher], catalog_path: Path, tmp_path: Path
) -> None:
    url, watcher = watched
    await _work_the_queue(url)
    with run_gateway(gateway_settings(url, catalog_path, free_port(), files_dir=tmp_path / "files")) as gateway:
        token, key = gateway.new_key()
        assert gateway.admin.put(f"/keys/{key['key_id']}/limits", json={"creates_per_minute": 5}).status_code == 200
        with gateway.client(token) as api:
            created = api.post("/predictions", json=create_body("watched"))
            assert created.status_code == 201, created.text
            assert finished(api, created.json()["id"])["status"] == "succeeded"
    assert sum(kind == "lua" for kind, _ in watcher.commands) > 20
    assert watcher.undeclared() == []
