"""The Replicate emulator in a process of its own, so that a client's load does not slow the upstream down.

`python -m tests.emulator.process PORT` serves it alone; `emulator_process()` starts one and yields its root URL
(the API under /v1, its controls under /v1/_emulator).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from tests.emulator import EmulatedModel, create_replicate_emulator
from tests.servers import free_port

ROOT = Path(__file__).parents[2]


@contextlib.contextmanager
def emulator_process() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.emulator.process", str(port)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/v1/account")
                break
            assert process.poll() is None and time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _serve(port: int) -> None:
    from tests.conftest import INPAINTING_SCHEMA, INPAINTING_VERSION, UPSTREAM_TOKEN

    inpainting = EmulatedModel("stability-ai", "stable-diffusion-inpainting", {INPAINTING_VERSION: INPAINTING_SCHEMA})
    emulator = create_replicate_emulator(tokens=[UPSTREAM_TOKEN], models=[inpainting])
    uvicorn.run(emulator, host="127.0.0.1", port=port, log_level="warning", backlog=4096, timeout_graceful_shutdown=1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="serve the Replicate emulator")
    parser.add_argument("port", type=int)
    _serve(parser.parse_args().port)
