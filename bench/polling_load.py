"""Polling load: how many upstream reads the follow-ups cost a prediction whose upstream never calls back.

One gateway process without a public address (so the upstream gets no webhook URL) in front of the Replicate
emulator, which sends no webhooks either; `--count` predictions of each duration in `--durations` run with
nobody reading them. The gateway's follow-ups drive each to `succeeded` (read straight from Redis, since a GET
would refresh it); the report gives the emulator's GETs per prediction and how late the gateway saw each end,
with the default polling settings unless `GATEWAY_POLL_*` say otherwise.

    python -m bench.polling_load [--count 20] [--durations 5,30,90]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import httpx
import orjson
import redis

from bench.emulated import Running, gateway_on_emulator
from bench.gateway_target import CREATE_BODY
from gateway.timestamps import parse_timestamp


def create(running: Running, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {running.token}"}
    with httpx.Client(base_url=running.gateway, headers=headers, timeout=30) as client:
        return [client.post("/v1/predictions", json=CREATE_BODY).json()["id"] for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--durations", default="5,30,90", help="seconds each batch of predictions runs upstream")
    args = parser.parse_args()
    durations = [float(d) for d in args.durations.split(",")]
    with gateway_on_emulator(log_level="warning") as running, redis.Redis.from_url(running.redis_url) as store:
        running.control("drop_webhooks", drop=True)
        batches = {}
        for duration in durations:
            running.control("configure", run_seconds=duration)
            batches[duration] = create(running, args.count)
        records = {}
        deadline = time.monotonic() + max(durations) * 2 + 60
        for ids in batches.values():
            for prediction_id in ids:
                while (fields := store.hgetall(f"gw:pred:{{{prediction_id}}}"))[b"status"] != b"succeeded":
                    assert time.monotonic() < deadline, f"{prediction_id} never finished"
                    time.sleep(0.2)
                records[prediction_id] = fields
        gets = [str(r["path"]) for r in running.upstream_requests() if r["method"] == "GET"]
        reads = collections.Counter(path.rsplit("/", 1)[1] for path in gets if "/predictions/" in path)
    print(f"upstream GETs per prediction, {args.count} predictions per duration, no webhooks, nobody reading:")
    for duration, ids in batches.items():
        counts = [reads[records[i][b"upstream_id"].decode()] for i in ids]
        late = [_seen_late(records[i]) for i in ids]
        print(
            f"  runs {duration:g}s: GETs mean {statistics.mean(counts):.1f} (min {min(counts)}, max {max(counts)});"
            f" end seen {statistics.median(late):.1f}s after it happened (median), {max(late):.1f}s at most"
        )


def _seen_late(fields: dict[bytes, bytes]) -> float:
    """Seconds between the upstream's end of the run and the gateway recording it."""
    doc = orjson.loads(fields[b"doc"])
    completed = parse_timestamp(doc["completed_at"]) or 0.0
    return float(fields[b"refreshed_at"]) - completed


if __name__ == "__main__":
    main()
