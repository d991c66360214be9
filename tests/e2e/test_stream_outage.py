"""A stream outlives a Redis outage: the client stays connected, and the events go on once Redis is back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.api.test_streams import WORDS, create_story
from tests.conftest import Upstream, gateway_on_own_redis
from tests.emulator import Fault
from tests.sse import Event, read_events


def test_a_stream_waits_out_a_redis_restart(tmp_path: Path, catalog_path: Path, replicate_upstream: Upstream) -> None:
    replicate_upstream.controls.configure(run_seconds=3)
    replicate_upstream.controls.inject(Fault(route="stream", status=503, times=3))  # translated from the record
    with gateway_on_own_redis(tmp_path, catalog_path) as (server, gateway):
        token, _ = gateway.new_key()
        with httpx.Client(base_url=f"{gateway.url}/v1", headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
            url = create_story(api)["urls"]["stream"]
        events: list[Event] = []
        reader = threading.Thread(target=lambda: events.extend(read_events(url)))
        reader.start()
        time.sleep(0.5)
        server.stop()
        time.sleep(1.5)
        server.start()
        reader.join(timeout=20)
    assert [data for name, _, data in events if name == "output"] == WORDS
    assert events[-1][::2] == ("done", "{}")
