"""Prometheus metrics of one gateway process, in a registry of its own (served at /metrics)."""

from __future__ import annotations

from contextlib import AbstractContextManager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.status import Status


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_http_requests", "HTTP requests answered", ["endpoint", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.created = Counter(
            "gateway_predictions_created", "Predictions created", ["model", "provider"], registry=self.registry
        )
        self.finished = Counter(
            "gateway_predictions_finished",
            "Predictions that reached a terminal status (counted once, by the process that recorded it)",
            ["model", "provider", "status"],
            registry=self.registry,
        )
        self.open_streams = Gauge(
            "gateway_open_streams", "Event streams this process is serving now", ["source"], registry=self.registry
        )
        self.upstream_reads = Counter(
            "gateway_upstream_reads",
            "Predictions re-read from their upstream (polls, and refreshes of stale records)",
            ["provider"],
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "gateway_webhook_attempts", "Client webhook attempts, by outcome", ["outcome"], registry=self.registry
        )
        self.webhook_latency = Histogram(
            "gateway_webhook_delivery_seconds",
            "From enqueueing a client webhook to the receiver's 2xx answer, retries included",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )

        self.limit_refusals = Counter(
            "gateway_limit_rejections",
            "Requests refused by a key's or tenant's limit, by reason (rate, concurrency, balance, budget)",
            ["reason"],
            registry=self.registry,
        )

    def request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def prediction_created(self, model: str, provider: str) -> None:
        self.created.labels(model, provider).inc()

    def prediction_finished(self, model: str, provider: str, status: Status) -> None:
        self.finished.labels(model, provider, status.value).inc()

    def upstream_read(self, provider: str) -> None:
        self.upstream_reads.labels(provider).inc()

    def streaming(self, source: str) -> AbstractContextManager[None]:
        """Count a stream as open while the block runs; `source` is `relayed` or `translated`."""
        return self.open_streams.labels(source).track_inprogress()

    def webhook_attempt(self, outcome: str) -> None:
        self.webhook_attempts.labels(outcome).inc()

    def webhook_delivered(self, seconds: float) -> None:
        self.webhook_latency.observe(seconds)

    def limit_refused(self, reason: str) -> None:
        self.limit_refusals.labels(reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
