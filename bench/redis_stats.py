"""Redis cost per request, from the server's own counters.

- commands: `INFO stats` `total_commands_processed`, which Valkey counts for every command executed, those
  a script calls included (`INFO commandstats`, the per-command breakdown, is kept in the results file).
- round trips: `INFO stats` `total_reads_processed`, the read events the server handled. A client's request,
  a pipeline or a MULTI/EXEC block written at once arrives in one read, so this counts round trips; a
  request too large for one read would count twice (none here comes close).

Background work (pub/sub, the webhook consumer's blocking reads, schedules) is counted too: its idle rate is
measured before each run and subtracted, and so are the harness's own INFO calls."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class Counters:
    commands: int
    reads: int
    by_command: dict[str, int]
    at: float


def read(client: redis.Redis) -> Counters:
    stats = client.info("stats")
    by_command = {name.removeprefix("cmdstat_"): int(fields["calls"]) for name, fields in client.info("commandstats").items()}
    return Counters(int(stats["total_commands_processed"]), int(stats["total_reads_processed"]), by_command, time.monotonic())


@dataclass(frozen=True)
class Cost:
    commands: float  # per request
    round_trips: float  # per request
    by_command: dict[str, float]  # calls per request, scripts' inner calls included


class Meter:
    """Counts a run's Redis cost: `start()` before it (after measuring the idle rate), `cost(n)` after."""

    _OWN = 2  # each `read` is two commands (INFO stats, INFO commandstats) in two round trips, on one connection

    def __init__(self, url: str, idle_seconds: float = 1.0) -> None:
        self._url = url
        self._idle_seconds = idle_seconds
        self._idle = (0.0, 0.0)
        self._client: redis.Redis | None = None
        self._before: Counters | None = None

    def start(self) -> None:
        self._client = redis.Redis.from_url(self._url)
        self._client.ping()  # the connection's handshake is done before anything is counted
        first = read(self._client)
        time.sleep(self._idle_seconds)
        second = read(self._client)
        span = second.at - first.at
        self._idle = ((second.commands - first.commands - self._OWN) / span, (second.reads - first.reads - self._OWN) / span)
        self._before = read(self._client)

    def cost(self, requests: int) -> Cost:
        assert self._client is not None and self._before is not None, "start() first"
        after, before = read(self._client), self._before
        self._client.close()
        span = after.at - before.at
        commands = after.commands - before.commands - self._OWN - max(0.0, self._idle[0]) * span
        reads = after.reads - before.reads - self._OWN - max(0.0, self._idle[1]) * span
        per = max(requests, 1)
        calls = {name: (count - before.by_command.get(name, 0)) / per for name, count in after.by_command.items()}
        mine = {name: round(value, 3) for name, value in calls.items() if value > 0 and name != "info"}  # `info` is ours
        return Cost(commands / per, reads / per, mine)
