"""Real Redis topologies for the tests, from the bundled valkey-server and valkey-cli: a 3-primary cluster and a
Sentinel-managed primary with one replica and three sentinels. Each runs in a temporary directory and is
stopped by pid."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from gateway.store.embedded import server_binary
from tests.servers import free_port

SERVICE = "gw-primary"
_READY_SECONDS = 30.0


@dataclass
class Node:
    """One valkey-server process (a cluster node, a primary, a replica or a sentinel)."""

    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class Topology:
    """Running nodes and the gateway URL that names them."""

    url: str
    password: str
    nodes: list[Node] = field(default_factory=list)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, decode_responses=True)


def _start(directory: Path, name: str, lines: list[str], password: str = "", sentinel: bool = False) -> Node:
    """A server whose config file `name`.conf (in `directory`) holds `lines`, on a free port."""
    port = free_port()
    base = [f"port {port}", "bind 127.0.0.1", f"dir {directory}", "save ''", "appendonly no"]
    config = directory / f"{name}.conf"
    config.write_text("\n".join([*base, *lines]) + "\n")
    command = [str(server_binary()), str(config), *(["--sentinel"] if sentinel else [])]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = Node(port, process)
    _wait(lambda: _answers(port, password))
    return node


def _answers(port: int, password: str) -> bool:
    try:
        return bool(redis.Redis(port=port, password=password or None, socket_connect_timeout=0.5).ping())
    except redis.ConnectionError:
        return False


def _wait(ready: Callable[[], bool], what: str = "server") -> None:
    deadline = time.monotonic() + _READY_SECONDS
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.05)


@contextlib.contextmanager
def cluster(directory: Path, primaries: int = 3) -> Iterator[Topology]:
    """A Valkey Cluster of `primaries` primaries (no replicas) sharing every slot; URL `redis+cluster://`."""
    password = secrets.token_hex(12)
    topology = Topology("", password)
    try:
        for index in range(primaries):
            folder = directory / f"node{index}"
            folder.mkdir()
            # the bus port is the client port + 10000 unless set: a free port above 55535 would have none
            lines = ["cluster-enabled yes", f"cluster-port {free_port()}", "cluster-config-file nodes.conf", "cluster-node-timeout 2000",
                     f"requirepass {password}", f"masterauth {password}"]
            topology.nodes.append(_start(folder, "node", lines, password))
        addresses = [f"127.0.0.1:{node.port}" for node in topology.nodes]
        cli = server_binary().with_name("valkey-cli")
        subprocess.run([str(cli), "-a", password, "--no-auth-warning", "--cluster", "create", *addresses, "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        _wait(lambda: all(_cluster_ok(topology, node.port) for node in topology.nodes), "cluster")
        topology.url = f"redis+cluster://:{password}@{','.join(addresses)}"
        yield topology
    finally:
        for node in topology.nodes:
            node.stop()


def _cluster_ok(topology: Topology, port: int) -> bool:
    return "cluster_state:ok" in str(topology.client(port).execute_command("CLUSTER", "INFO"))


@contextlib.contextmanager
def sentinels(directory: Path, count: int = 3) -> Iterator[Topology]:
    """One primary, one replica and `count` sentinels (quorum 2) watching it as SERVICE; URL
    `redis+sentinel://host:port,.../SERVICE` with the primary's password."""
    password = secrets.token_hex(12)
    topology = Topology("", password)
    auth = [f"requirepass {password}", f"masterauth {password}"]
    try:
        primary = _start(directory, "primary", auth, password)
        replica = _start(directory, "replica", [*auth, f"replicaof 127.0.0.1 {primary.port}"], password)
        topology.nodes += [primary, replica]
        _wait(lambda: topology.client(replica.port).info("replication").get("master_link_status") == "up", "replica")
        for index in range(count):
            lines = [f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2", f"sentinel auth-pass {SERVICE} {password}",
                     f"sentinel down-after-milliseconds {SERVICE} 1000", f"sentinel failover-timeout {SERVICE} 5000"]
            topology.nodes.append(_start(directory, f"sentinel{index}", lines, sentinel=True))
        watchers = topology.nodes[2:]
        _wait(lambda: all(_sees_replica(node.port) for node in watchers), "sentinels")
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in watchers)
        topology.url = f"redis+sentinel://:{password}@{hosts}/{SERVICE}"
        yield topology
    finally:
        for node in topology.nodes:
            node.stop()


def _sees_replica(port: int) -> bool:
    replicas = redis.Redis(port=port, decode_responses=True).execute_command("SENTINEL", "REPLICAS", SERVICE)
    return bool(replicas)


def primary_port(topology: Topology) -> int:
    """The port of the primary as the first sentinel sees it now."""
    _, port = redis.Redis(port=topology.nodes[2].port).sentinel_get_master_addr_by_name(SERVICE)
    return int(port)
