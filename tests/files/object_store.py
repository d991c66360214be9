"""A real S3-protocol server for the tests: moto in its standalone server mode, a process of its own on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import botocore.session
import httpx

from tests.servers import free_port

ACCESS_KEY_ID = "AKIAGATEWAYTESTS0001"
SECRET_ACCESS_KEY = "s3-secret-key-for-tests-never-shown"
REGION = "us-east-1"


@dataclass(frozen=True)
class ObjectStore:
    url: str
    process: subprocess.Popen[bytes]

    def environ(self) -> dict[str, str]:
        """The standard AWS variables a gateway reads its credentials and region from."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY, "AWS_REGION": REGION}

    def new_bucket(self) -> str:
        name = f"gw-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def client(self):  # type: ignore[no-untyped-def]  # botocore's clients are made at run time
        """A plain synchronous client, to look at the bucket from outside the gateway."""
        session = botocore.session.get_session()
        return session.create_client(
            "s3", endpoint_url=self.url, region_name=REGION, aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)


@contextlib.contextmanager
def object_store(log_dir: Path) -> Iterator[ObjectStore]:
    """`moto_server` on a free port until the block exits (stopped by its pid)."""
    port = free_port()
    moto_server = Path(sys.executable).parent / "moto_server"
    with (log_dir / f"moto-{port}.log").open("wb") as sink:
        process = subprocess.Popen([str(moto_server), "-H", "127.0.0.1", "-p", str(port)], stdout=sink, stderr=subprocess.STDOUT)
    store = ObjectStore(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 20
        while not _answers(store.url):
            assert process.poll() is None and time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.1)
        yield store
    finally:
        store.stop()


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/moto-api/")
    except httpx.TransportError:
        return False
    return True
