"""The two load drivers: wrk in a closed loop (a fixed number of connections, each sending its next request when
the last is answered), and an open loop at a fixed rate (requests leave on schedule whatever the server does,
and latency runs from each one's intended send time, so a stalled server is not excused: no coordinated
omission)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass

import aiohttp
import orjson

from bench.processes import find_program


@dataclass(frozen=True)
class Request:
    """What every request of a run sends."""

    method: str
    url: str  # absolute
    authorization: str
    body: dict[str, object] | None = None
    headers: tuple[tuple[str, str], ...] = ()  # more headers, e.g. Prefer


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # answers other than 2xx, and socket errors

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _lua(request: Request, path: str) -> str:
    headers = [("Authorization", request.authorization), *request.headers]
    lines = [f'wrk.method = "{request.method}"', f'wrk.path = "{path}"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers]
    if request.body is not None:
        lines += ['wrk.headers["Content-Type"] = "application/json"', f"wrk.body = [[{orjson.dumps(request.body).decode()}]]"]
    return "\n".join(lines) + "\n"


def wrk(request: Request, seconds: float, connections: int = 32) -> LoadResult:
    """`wrk -t1 -c<connections>` for `seconds` (whole seconds, at least one)."""
    program = find_program("wrk")
    if program is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    root, path = _split(request.url)
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_lua(request, path))
        script.flush()
        duration = f"-d{max(seconds, 1):.0f}s"
        command = [program, "-t1", f"-c{connections}", duration, "--timeout", "30s", "--latency", "-s", script.name, root]
        output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    return parse_wrk(output)


def _split(url: str) -> tuple[str, str]:
    scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    return f"{scheme}://{host}", "/" + path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> LoadResult:
    """wrk's report (with `--latency`) as a result."""

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]

    requests, seconds, unit = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", output).groups()  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    elapsed = float(seconds) * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
    return LoadResult(int(requests), elapsed, latency("50"), latency("99"), errors)


GRACE_SECONDS = 5.0


def open_loop(request: Request, rate: float, seconds: float) -> LoadResult:
    """`rate` requests a second for `seconds`, each on schedule, on as many connections as that takes; requests
    still unanswered `GRACE_SECONDS` after the last was due count as errors."""
    return asyncio.run(_open_loop(request, rate, seconds))


async def _open_loop(request: Request, rate: float, seconds: float) -> LoadResult:
    headers = {"Authorization": request.authorization, "Content-Type": "application/json", **dict(request.headers)}
    body = orjson.dumps(request.body) if request.body is not None else None
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(intended: float) -> None:
            nonlocal errors
            try:
                async with session.request(request.method, request.url, data=body, headers=headers) as response:
                    await response.read()
                    ok = response.status < 300
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - intended)
            else:
                errors += 1

        count = int(rate * seconds)
        start = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        for i in range(count):
            intended = start + i / rate
            await asyncio.sleep(max(0.0, intended - time.perf_counter()))
            tasks.append(asyncio.create_task(one(intended)))
        _, late = await asyncio.wait(tasks, timeout=max(0.0, start + seconds + GRACE_SECONDS - time.perf_counter()))
        for task in late:  # a target that falls behind is not waited for: what it owes counts as errors
            task.cancel()
        errors += len(late)
        elapsed = time.perf_counter() - start
    latencies.sort()
    return LoadResult(len(latencies), elapsed, percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000, errors)


def percentile(ordered: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie (nan for none)."""
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")

