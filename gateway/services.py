"""The composition root: every service built over one store and one set of providers, with their background work."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import SecretStr

from gateway.api.urls import Links, file_id_in
from gateway.audit import AuditLog
from gateway.auth import Authenticator
from gateway.catalog import Catalog
from gateway.config import Settings
from gateway.deliveries import DeliveryWorker, Outbox, RetryPolicy, TenantSecrets, Webhooks, WebhookTargets, WorkerLimits
from gateway.deployments import Deployments
from gateway.draining import Draining
from gateway.errors import ShuttingDown
from gateway.files import FileLimits, Files, FileStorage, InputFiles, LocalStorage, prediction_owners
from gateway.files.inputs import DownloadUrl
from gateway.files.s3 import S3Access, S3Location, S3Storage
from gateway.keys import KeyRecord, KeyService
from gateway.lifecycle import Deadlines, FollowUpPolicy, FollowUps
from gateway.lifecycle.follow_ups import ABANDONED_AFTER_SECONDS
from gateway.limits import Admission, LimitsService
from gateway.metrics import Metrics
from gateway.openai_images import Images
from gateway.predictions import IdempotentCreates, Predictions, Tracker, Trainings, UpstreamRequests
from gateway.providers import CredentialPools, Provider, Reporting, build_providers, capabilities_of
from gateway.providers.http import UpstreamClient
from gateway.routing import Breakers
from gateway.schemas import Schemas
from gateway.signing import SECRET_NAME, Signer
from gateway.ssrf import Resolve, UrlGuard, system_resolve
from gateway.store import BreakerPolicy, QueueDepths, Store, StoredPrediction, default_retention
from gateway.streams import Streams
from gateway.usage import Metering, Price, UsageReports
from gateway.validation import UrlPolicy
from gateway.waiters import Waiters

READY_TIMEOUT_SECONDS = 1.0  # how long a readiness probe waits for Redis
STOP_TIMEOUT_SECONDS = 10.0  # how long a shutdown waits for the background tasks to stop
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    settings: Settings
    catalog: Catalog
    providers: dict[str, Provider]
    auth: Authenticator
    keys: KeyService
    audit: AuditLog
    schemas: Schemas
    predictions: Predictions
    creates: IdempotentCreates  # creates through the API: at most once per idempotency key
    files: Files
    metrics: Metrics
    links: Links
    waiters: Waiters
    streams: Streams
    follow_ups: FollowUps
    deadlines: Deadlines
    webhooks: Webhooks
    limits: LimitsService
    metering: Metering
    usage: UsageReports
    images: Images
    ready: Callable[[], Awaitable[None]]  # returns once the store answers, else StoreError (ShuttingDown: draining)
    queue_depths: Callable[[], Awaitable[QueueDepths]]  # a reading of the work waiting in Redis
    breakers: Breakers  # of upstream routes, shared by every process
    credential_pools: CredentialPools  # upstream credentials and their shared cooling
    deployments: Deployments  # tenants' own deployments beside the catalog's
    trainings: Trainings  # tenants' trainings, kept as prediction records of their own kind


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    catalog: Catalog,
    metrics: Metrics | None = None,
    resolve: Resolve = system_resolve,
    *,
    draining: Draining | None = None,
    runs_model_servers: bool = True,
) -> AsyncIterator[Services]:
    """Build every service, start the providers and background tasks, and close it all on exit.

    `resolve` names hosts of URLs in prediction inputs (tests give one that needs no DNS). When `draining`
    starts, readiness fails, waits and streams end, and background work is handed back to Redis. Without
    `runs_model_servers` the managed Cog servers are taken to be run by a supervising process."""
    metrics = metrics or Metrics()
    draining = draining or Draining()
    store = _connect(settings, metrics)
    storage = _file_storage(settings)
    providers: dict[str, Provider] = {}
    tasks: list[asyncio.Task[None]] = []
    breakers: Breakers | None = None
    try:
        await storage.start()
        services = await _build(settings, catalog, store, storage, metrics, resolve, draining, runs_model_servers)
        providers = services.providers
        breakers = services.breakers
        await breakers.start()
        for provider in providers.values():
            await provider.start()
        tasks = _started(_watchers(services))
        work = _started(_work(services, settings))
        tasks += work
        _drain_on(draining, services, work)
        yield services
    finally:
        await _stop(tasks)
        if breakers is not None:
            await breakers.aclose()
        for provider in providers.values():
            await provider.aclose()
        await storage.aclose()
        await store.aclose()


@contextlib.asynccontextmanager
async def open_model_servers(settings: Settings, catalog: Catalog) -> AsyncIterator[None]:
    """The managed Cog servers alone, for a supervisor whose serving processes open their services with
    `runs_model_servers=False`: started (waiting until ready) on entry, stopped on exit. Runs recorded on
    servers a killed gateway left behind are failed, through the same path every change takes."""
    metrics = Metrics()  # nothing serves them: the workers count the model servers' work
    store = _connect(settings, metrics)
    storage = _file_storage(settings)
    providers: dict[str, Provider] = {}
    try:
        await storage.start()
        services = await _build(settings, catalog, store, storage, metrics, system_resolve, Draining(), True)
        providers = services.providers
        for provider in providers.values():
            await provider.start_servers()
        yield
    finally:
        for provider in providers.values():
            await provider.aclose()
        await storage.aclose()
        await store.aclose()


def _connect(settings: Settings, metrics: Metrics) -> Store:
    assert settings.redis_url, "the Redis URL is resolved (or an embedded server started) before services open"
    return Store.connect(
        settings.redis_url,
        prediction_retention_seconds=settings.prediction_retention_seconds,
        audit_retention_seconds=settings.audit_retention_seconds,
        usage_retention=default_retention(
            settings.prediction_retention_seconds, settings.usage_retention_seconds, settings.usage_row_retention_seconds
        ),
        on_error=metrics.redis_error,  # counted here: the store knows nothing of metrics
    )


def _started(work: list[Coroutine[Any, Any, None]]) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(job, name=getattr(job, "__qualname__", None)) for job in work]


def _drain_on(draining: Draining, services: Services, work: list[asyncio.Task[None]]) -> None:
    """At the start of a shutdown: answer waits, end streams, and hand background work back (each loop gives
    back what it holds as it stops). The watchers keep running: requests are still served meanwhile."""
    draining.on_start(services.waiters.close)
    draining.on_start(services.streams.end_relays)
    draining.on_start(lambda: _cancel(work))
    for provider in services.providers.values():
        draining.on_start(provider.drain)


def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the background tasks together and wait for them, but not forever: a shutdown must end even if one
    of them is stuck (it is named in the log)."""
    _cancel(tasks)
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_SECONDS)
    for task in pending:
        logger.warning("background task %s did not stop within %s s", task.get_name(), STOP_TIMEOUT_SECONDS)


def _watchers(services: Services) -> list[Coroutine[Any, Any, None]]:
    """Subscriptions that keep this process's copies current while it serves."""
    return [services.auth.watch(), services.waiters.run(), services.limits.watch(), services.credential_pools.watch()]


def _work(services: Services, settings: Settings) -> list[Coroutine[Any, Any, None]]:
    """Work shared with every other process through Redis, handed back when this one starts to shut down."""
    return [
        services.files.sweep_forever(settings.file_sweep_seconds),
        services.follow_ups.run(),
        services.deadlines.run(),
        services.webhooks.worker.run(),
    ]


def _file_storage(settings: Settings) -> FileStorage:
    """Local files per process, or one S3-compatible bucket that every process shares."""
    bucket = settings.object_store()
    if bucket is None:
        return LocalStorage(settings.files_directory())
    access = S3Access(
        settings.s3_endpoint_url,
        settings.aws_region,
        _revealed(settings.aws_access_key_id),
        _revealed(settings.aws_secret_access_key),
        _revealed(settings.aws_session_token),
    )
    return S3Storage(S3Location(*bucket), access)


def _revealed(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


async def _build(
    settings: Settings,
    catalog: Catalog,
    store: Store,
    storage: FileStorage,
    metrics: Metrics,
    resolve: Resolve,
    draining: Draining,
    runs_model_servers: bool,
) -> Services:
    links = Links(
        Signer(await store.shared_secret(SECRET_NAME)),
        settings.public_base_url,
        settings.local_base_url(),
        output_link_seconds=settings.output_link_seconds,
    )
    files = Files(
        store.files,
        storage,
        links.downloads,
        links.uploads,
        prediction_owners(store.predictions),
        FileLimits(settings.file_max_bytes, settings.file_expiry_seconds, settings.file_page_size),
    )
    tracker = Tracker(store.predictions, metrics, lambda name: capabilities_of(catalog.providers[name]).remote_outputs)
    webhooks = _webhooks(settings, store, links, metrics, resolve)
    tracker.observe(webhooks.outbox.observe)
    price_of = _prices(catalog)
    metering = Metering(store.usage, price_of)
    tracker.observe(metering.observe)
    # A prediction holds its concurrency slot until settled; one that never finishes (its upstream lost it) stops
    # counting after a day rather than holding the slot until its record expires.
    running_seconds = min(settings.prediction_retention_seconds, 24 * 3600)
    limits = LimitsService(store.limits, settings.key_cache_seconds, running_seconds, metrics.limit_refused)

    async def admit(key: KeyRecord, record: StoredPrediction) -> Admission:
        return await limits.admission(key, record, price_of(record.doc["model"]).estimate(record.doc["input"]))

    requests = UpstreamRequests(InputFiles(files, file_id_in), links.upstream_webhook, _download_urls(links))
    pools = CredentialPools(store.credentials, metrics.upstream_rate_limited)
    metrics.credential_cooling.read_from(pools.cooling)
    reporting = Reporting(
        tracker.report, requests.for_server, store.queue, links.callbacks.server_token, links.upload, pools, runs_model_servers
    )
    addresses = settings.address_policy()
    providers = build_providers(
        catalog.providers, reporting, addresses, lambda name: functools.partial(metrics.upstream_call, name)
    )
    policy = UrlPolicy(UrlGuard(addresses, resolve), gateway_file=lambda url: file_id_in(url) is not None)
    schemas = Schemas(store.schemas, providers, policy)
    waiters = Waiters(store.prediction_changes)
    breakers = _breakers(settings, store, metrics)
    deployments = Deployments(catalog, store.deployments, store.audit)
    predictions = Predictions(
        catalog,
        store.predictions,
        schemas,
        providers,
        tracker,
        requests,
        waiters,
        metrics,
        resolve=deployments.resolve,
        check_webhook=webhooks.targets.check,
        admit=admit,
        release=metering.release,
        refresh_after=settings.refresh_after_seconds,
        page_bytes=settings.list_page_bytes,
        follow_up_after=settings.poll_first_seconds,
        breakers=breakers,
        breaker_retry_after=math.ceil(settings.breaker_open_seconds),
    )
    follow_ups = FollowUps(
        store.follow_ups,
        predictions,
        FollowUpPolicy(
            first_seconds=settings.poll_first_seconds,
            ratio=settings.poll_ratio,
            longest_seconds=settings.poll_longest_seconds,
            lease_seconds=settings.follow_up_lease_seconds,
            abandoned_after_seconds=min(predictions.longest_create(), ABANDONED_AFTER_SECONDS),
        ),
        # A crash between a terminal change and its webhook's enqueue, or its usage record, loses nothing.
        settle=[webhooks.outbox.settle, metering.settle],
    )
    auth = Authenticator(store.keys, settings.key_cache_seconds)
    keys, audit = KeyService(store.keys), AuditLog(store.audit)
    streams = Streams(store.predictions, predictions, providers, metrics)
    return Services(
        settings, catalog, providers, auth, keys, audit, schemas, predictions,
        IdempotentCreates(predictions, store.idempotency, settings.prediction_retention_seconds),
        files, metrics, links, waiters, streams,
        follow_ups, Deadlines(store.deadlines, predictions), webhooks, limits, metering,
        UsageReports(store.usage, settings.currency),
        Images(catalog, predictions, files, file_id_in, auth.active),
        ready=functools.partial(_ready, draining, store),
        queue_depths=functools.partial(store.depths, _slot_queues(catalog)),
        breakers=breakers,
        credential_pools=pools,
        deployments=deployments,
        trainings=Trainings(
            catalog, store.predictions, providers, tracker, admit=admit, abandon=predictions.abandon,
            check_webhook=webhooks.targets.check, follow_up_after=settings.poll_first_seconds,
        ),
    )  # fmt: skip


async def _ready(draining: Draining, store: Store) -> None:
    if draining.started:
        raise ShuttingDown("The gateway is shutting down")
    await store.ping(READY_TIMEOUT_SECONDS)


def _webhooks(settings: Settings, store: Store, links: Links, metrics: Metrics, resolve: Resolve) -> Webhooks:
    policy = settings.webhook_address_policy()
    secrets = TenantSecrets(store.deliveries)
    outbox = Outbox(store.deliveries, lambda record: orjson.dumps(links.prediction(record, links.api_root())).decode())
    worker = DeliveryWorker(
        store.deliveries,
        secrets,
        UpstreamClient(settings.webhook_timeout_seconds, settings.webhook_concurrency, policy, name="webhooks"),
        RetryPolicy(settings.webhook_first_retry_seconds, settings.webhook_retry_seconds),
        WorkerLimits(settings.webhook_lease_seconds, settings.webhook_concurrency),
        metrics,
    )
    return Webhooks(outbox, secrets, WebhookTargets(UrlGuard(policy, resolve)), worker)


def _breakers(settings: Settings, store: Store, metrics: Metrics) -> Breakers:
    policy = BreakerPolicy.from_seconds(
        settings.breaker_failures,
        settings.breaker_window_seconds,
        settings.breaker_open_seconds,
        settings.breaker_probe_seconds,
    )
    return Breakers(store.breakers, policy, metrics.breaker_transition)


def _prices(catalog: Catalog) -> Callable[[str], Price]:
    prices = {model.name: Price.from_config(model.price) for model in catalog.models()}
    return lambda model: prices.get(model, Price())  # a model since removed from the catalog costs nothing


def _slot_queues(catalog: Catalog) -> list[str]:
    """The durable queues of the slot-limited providers, each named after its provider."""
    return [name for name, config in catalog.providers.items() if capabilities_of(config).slots]


def _download_urls(links: Links) -> Callable[[bool], DownloadUrl | None]:
    """Files reach servers beside the gateway by its local address, remote upstreams by its public one; without
    a public address they are passed inline."""

    def download_urls(local: bool) -> DownloadUrl | None:
        base = links.local_base if local else links.public_base
        if base is None:
            return None
        return lambda file, expires_at: links.file_download(file, base, expires_at)

    return download_urls
