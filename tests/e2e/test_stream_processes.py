"""A stream read from one gateway process while the upstream reports to another: the events follow the record
that both share in Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_streams import WORDS, create_story
from tests.conftest import Gateway, Upstream, gateway_process
from tests.emulator import Fault
from tests.sse import read_events


@pytest.fixture(scope="module")
def reader_process(redis_url: str, catalog_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second gateway that never re-reads predictions upstream itself: all it learns comes through Redis."""
    with gateway_process(redis_url, catalog_path, tmp_path_factory.mktemp("reader"), refresh_after_seconds="3600") as (url, _, _):
        yield url


def test_a_stream_on_one_process_follows_webhooks_that_reach_another(
    gateway: Gateway, tenant_key: str, replicate_upstream: Upstream, reader_process: str
) -> None:
    replicate_upstream.controls.configure(run_seconds=2)
    replicate_upstream.controls.inject(Fault(route="stream", status=503, times=5))  # translated from the record
    with gateway.client(tenant_key) as api:
        created = create_story(api)  # the upstream's webhooks go to `gateway`, this process
        url = created["urls"]["stream"].replace(gateway.url, reader_process)
        first = read_events(url, limit=1)
        assert api.get(f"/predictions/{created['id']}").json()["status"] == "processing"  # live, not replayed at the end
        rest = read_events(url, headers={"Last-Event-ID": first[-1][1]})
    assert [data for name, _, data in first + rest if name == "output"] == WORDS
    assert rest[-1][::2] == ("done", "{}")
