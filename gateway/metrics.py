"""Prometheus metrics of one gateway process, in a registry of its own (served at /metrics).

Labels never carry keys, tenants, URLs or tokens: routes are path templates, providers their catalog names,
upstream credentials their fingerprints.

The workers of `gateway serve --workers N` share one port, so a scrape reaches any one of them: their values
are kept in prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR, set by the supervisor) and each
worker's /metrics serves the sums over all of them, as for gunicorn. Counters of a worker that died stay in the
sums (they never go back); gauges count live workers only."""

from __future__ import annotations

from contextlib import AbstractContextManager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.cooling import CoolingCollector
from gateway.depths import DepthCollector
from gateway.routing.gauges import BreakerGauges
from gateway.status import Status

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """`shared`: this process is one of several workers (their sums are served; see above)."""

    def __init__(self, *, shared: bool = False) -> None:
        self.registry = CollectorRegistry()
        self._shared = shared
        self.requests = Counter(
            "gateway_http_requests",
            "HTTP requests answered, by route template (`unmatched` for any unknown path), method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status class (2xx, 4xx, ...)",
            ["route", "method", "status_class"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_request_duration_seconds",
            "Time an upstream provider took to answer one HTTP call (answered or failed), by catalog name and operation",
            ["provider", "operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Upstream calls that failed: timeout, connection, or the answer's status (http_429, http_4xx, http_5xx)",
            ["provider", "kind"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "gateway_upstream_rate_limited",
            "429s an upstream credential met in this process, by catalog name and credential fingerprint",
            ["provider", "credential"],
            registry=self.registry,
        )
        self.credential_cooling = CoolingCollector(self.registry)
        self.redis_errors = Counter(
            "gateway_redis_errors", "Redis errors turned into StoreError, by kind", ["kind"], registry=self.registry
        )
        self.depths = DepthCollector(self.registry)
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
            "gateway_open_streams",
            "Event streams this process (or its live fellow workers) serve now",
            ["source"],
            registry=self.registry,
            multiprocess_mode="livesum",
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
        self.route_failures = Counter(
            "gateway_route_failures",
            "Creates a route failed to take, by provider and how far the request got (not_sent, refused, unknown:"
            " the answer was lost and the upstream showed no prediction); the next route, if any, was tried",
            ["provider", "delivery"],
            registry=self.registry,
        )
        self.limit_refusals = Counter(
            "gateway_limit_rejections",
            "Requests refused by a key's or tenant's limit, by reason (rate, concurrency, balance, budget)",
            ["reason"],
            registry=self.registry,
        )

        self.breakers = BreakerGauges(self.registry)
        self.breaker_transitions = Counter(
            "gateway_breaker_transitions",
            "Circuit breaker transitions of an upstream route into a state, counted by the process that made them",
            ["route", "state"],
            registry=self.registry,
        )

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method, f"{status // 100}xx").observe(seconds)

    def upstream_call(self, provider: str, operation: str, seconds: float, error: str | None) -> None:
        """One HTTP call to `provider`; `error` is the failure's kind, None when it was answered with success."""
        self.upstream_latency.labels(provider, operation).observe(seconds)
        if error is not None:
            self.upstream_errors.labels(provider, error).inc()

    def upstream_rate_limited(self, provider: str, credential: str) -> None:
        self.rate_limited.labels(provider, credential).inc()

    def redis_error(self, kind: str) -> None:
        self.redis_errors.labels(kind).inc()

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

    def route_failed(self, provider: str, delivery: str) -> None:
        self.route_failures.labels(provider, delivery).inc()

    def limit_refused(self, reason: str) -> None:
        self.limit_refusals.labels(reason).inc()

    def breaker_transition(self, route: str, state: str) -> None:
        self.breaker_transitions.labels(route, state).inc()

    def exposition(self) -> bytes:
        if not self._shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        for scraped in (self.depths, self.breakers, self.credential_cooling):  # read from Redis: the same everywhere
            registry.register(scraped)
        return generate_latest(registry)
