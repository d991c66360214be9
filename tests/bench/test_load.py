"""The harness's load drivers: wrk's report read right, and the open loop's latency counted from each request's
intended send time, so that a server that falls behind shows it."""

from __future__ import annotations

import asyncio
import math
import time

from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route

from bench.load import LoadResult, Request, open_loop, parse_wrk, percentile
from tests.servers import serve_in_thread

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8000
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.31ms    2.10ms  41.02ms   90.00%
    Req/Sec     5.10k   300.00     5.60k    70.00%
  Latency Distribution
     50%  850.00us
     75%    7.01ms
     90%    8.50ms
     99%    1.20s 
  50760 requests in 10.02s, 30.11MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   5065.87
Transfer/sec:      3.00MB
"""


def test_wrks_report_is_read_with_its_units_and_errors() -> None:
    assert parse_wrk(WRK_OUTPUT) == LoadResult(requests=50760, seconds=10.02, p50_ms=0.85, p99_ms=1200.0, errors=12)


def test_a_run_of_minutes_is_read_in_seconds() -> None:
    output = WRK_OUTPUT.replace("50760 requests in 10.02s", "50760 requests in 1.50m").replace("Socket errors", "x")
    result = parse_wrk(output)
    assert (result.seconds, result.errors) == (90.0, 7)


def test_percentiles_of_sorted_values() -> None:
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile([3.0], 0.99)) == (51.0, 100.0, 3.0)
    assert math.isnan(percentile([], 0.5))


def test_the_open_loop_charges_a_slow_server_for_the_requests_it_kept_waiting() -> None:
    """One request at a time, 20 ms each, asked for 100 a second: the server does a second's requests in two.
    Timed from when each request was sent, the last ones would look like 20 ms; timed from when they were due
    they waited about a second."""
    lock, arrivals = asyncio.Lock(), []

    async def slow(request: HttpRequest) -> Response:
        arrivals.append(time.monotonic())
        async with lock:
            await asyncio.sleep(0.02)
        return Response(b"{}", status_code=201)

    with serve_in_thread(Starlette(routes=[Route("/v1/predictions", slow, methods=["POST"])])) as root:
        result = open_loop(Request("POST", f"{root}/v1/predictions", "Bearer x", {}), rate=100, seconds=1)
    assert (result.requests, result.errors) == (100, 0)
    assert arrivals[-1] - arrivals[0] < 1.5  # sent on schedule, whatever the answers
    assert result.p99_ms > 500
