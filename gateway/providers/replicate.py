"""Replicate and Replicate-compatible aggregators: the same protocol under any base URL and path prefix."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from standardwebhooks import Webhook, WebhookVerificationError

from gateway.catalog import Route, TargetKind
from gateway.config import ProviderConfig
from gateway.errors import Delivery, GatewayError, InvalidInput, NotFound, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.providers.base import (
    WEBHOOK_EVENTS,
    Callback,
    Capabilities,
    CreateRequest,
    Provider,
    TrainingRequest,
    UpstreamPrediction,
    identify,
)
from gateway.providers.credentials import RATE_LIMITED, Credential, CredentialPool, CredentialState
from gateway.providers.http import UpstreamClient, UpstreamResponse, UpstreamStream
from gateway.ssrf import AddressRefused

logger = logging.getLogger(__name__)
_DELIVERY_HOSTS = ("replicate.delivery",)
_SECRET_RETRY_SECONDS = 30.0
_STREAM_HOSTS = ("replicate.com", "replicate.net")  # streaming.api.replicate.com, streaming-api.svc.….replicate.net
_FIND_PAGES = 5  # how deep a lookup goes into the account's newest predictions (100 a page at Replicate)
_RESETS_IN = re.compile(r"(?:in|resets in) ~?(\d+)\s*s")
_TRAININGS = "trainings/"  # how a training's upstream id is kept: the path of the object upstream
_OWNERS_REMEMBERED = 10_000  # upstream predictions whose creating credential a process remembers
_Answer = TypeVar("_Answer", UpstreamResponse, UpstreamStream)


class ReplicateProvider(Provider):
    """Tokens come from a `CredentialPool` (one of this process only when none is given). A prediction belongs
    to the account of the token that created it; others' reads of it are 404, so reads and cancels try the
    other tokens after a 404, the one remembered as its creator first."""

    capabilities = Capabilities(remote_outputs=True)

    def __init__(self, name: str, config: ProviderConfig, client: UpstreamClient, pool: CredentialPool | None = None) -> None:
        self.name = name
        assert config.base_url is not None, "validated by ProviderConfig"
        self._base = config.base_url
        self._origin = _origin(config.base_url)
        self._output_hosts = (urlsplit(config.base_url).netloc, *_DELIVERY_HOSTS)
        self._stream_hosts = (urlsplit(config.base_url).netloc, *_STREAM_HOSTS)
        self._pool = pool or CredentialPool.local(name, config)
        self._owners: OrderedDict[str, str] = OrderedDict()  # upstream id -> fingerprint of its creator, newest last
        self._client = client
        self._signers: list[Webhook] = []  # the webhook signing secret of each token's account, once known
        self._learning: asyncio.Task[None] | None = None

    @property
    def usable(self) -> bool:
        return len(self._pool) > 0

    async def start(self) -> None:
        if self.usable:
            self._learning = asyncio.create_task(self._learn_signing_secrets())

    def parse_webhook(self, callback: Callback, upstream_id: str) -> UpstreamPrediction | None:
        """The payload of a webhook signed with the upstream account's secret (Standard Webhooks, as Replicate
        signs them); None for anything else (an upstream that does not sign, a secret not known yet, a forgery),
        which is re-read from the upstream instead."""
        if not any(_signed_by(signer, callback) for signer in self._signers):
            return None
        try:
            reported = _from_upstream(callback.payload)
        except UpstreamError:
            return None
        return reported if reported.id == upstream_id else None

    async def create(self, request: CreateRequest) -> UpstreamPrediction:
        path, body = _create_call(request)
        response, credential = await self._request("create", "POST", path, body)
        created = _from_upstream(response.json())
        self._remember(created.id, credential)
        return created

    async def create_training(self, request: TrainingRequest) -> UpstreamPrediction:
        """Trainings are polled (no upstream webhook): their webhooks would name an id the gateway keeps as
        `trainings/<id>`. That form sends `get` and `cancel` to `/trainings/<id>`."""
        path = f"/models/{request.model}/versions/{request.version}/trainings"
        body = {"destination": request.destination, "input": request.input}
        response, credential = await self._request("create_training", "POST", path, body)
        created = _from_upstream(response.json(), _TRAININGS)
        self._remember(created.id, credential)
        return created

    async def get(self, upstream_id: str) -> UpstreamPrediction:
        response, _ = await self._request("get", "GET", _object_path(upstream_id), owned=upstream_id)
        return _from_upstream(response.json(), _collection(upstream_id))

    async def cancel(self, upstream_id: str) -> UpstreamPrediction | None:
        response, _ = await self._request("cancel", "POST", f"{_object_path(upstream_id)}/cancel", owned=upstream_id)
        return _from_upstream(response.json(), _collection(upstream_id))

    async def credentials(self) -> list[CredentialState]:
        return await self._pool.states()

    async def find(self, callback: str, since: float) -> UpstreamPrediction | None:
        """Replicate echoes each prediction's webhook, and lists an account's predictions newest first: the
        first pages back to `since` of each credential's account are searched."""
        for credential in self._pool:  # an account lists only the predictions it created
            found = await self._find_as(credential, callback, since)
            if found is not None:
                self._remember(found.id, credential)
                return found
        return None

    async def _find_as(self, credential: Credential, callback: str, since: float) -> UpstreamPrediction | None:
        path: str | None = "/predictions"
        headers = {"Authorization": f"Bearer {credential.token}"}
        for _ in range(_FIND_PAGES):
            assert path is not None
            response = await self._client.request("GET", self._base + path, headers=headers, operation="find")
            if response.status >= 400:
                raise _error(response)
            page = response.json()
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise UpstreamError("The upstream provider sent a malformed list of predictions")
            for item in results:
                if isinstance(item, dict) and str(item.get("webhook") or "").endswith(callback):
                    return _from_upstream(item)
            path = self._relative(page.get("next"))
            if path is None or not results or _created_before(results[-1], since):
                return None
        # So many predictions since then that the search stopped short: absence is not proven.
        raise UpstreamError("The upstream provider has too many recent predictions to search them all")

    def _relative(self, url: Any) -> str | None:
        """The path under the base URL of a link the upstream handed out; None for no link or a foreign one."""
        return url[len(self._base) :] if isinstance(url, str) and url.startswith(self._base + "/") else None

    async def version_schema(self, model: str, route: Route) -> dict[str, Any] | None:
        if route.kind is TargetKind.VERSION:
            version = (await self._request("schema", "GET", f"/models/{model}/versions/{route.target}"))[0].json()
        elif route.kind is TargetKind.MODEL:
            version = (await self._request("schema", "GET", f"/models/{route.target}"))[0].json().get("latest_version") or {}
        else:
            return None
        schema = version.get("openapi_schema")
        return schema if isinstance(schema, dict) else None

    async def open_output(self, url: str) -> UpstreamStream:
        """Output files need the API token (replicate.delivery does); it goes only to the upstream's own hosts."""
        stream = await self._open("output", url, self._output_hosts, {}, "The output file's address is not allowed")
        if stream.status != 200:
            stream.close()
            if stream.status == 404:
                raise NotFound("The output is no longer available from the upstream provider")
            raise UpstreamError(f"The upstream provider failed to send the output (HTTP {stream.status})")
        return stream

    async def open_stream(self, url: str, last_event_id: str | None) -> UpstreamStream:
        """The prediction's event stream (its `urls.stream`), after `last_event_id` when given."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        stream = await self._open("stream", url, self._stream_hosts, headers, "The event stream's address is not allowed")
        if stream.status != 200 or not stream.headers.get("content-type", "").startswith("text/event-stream"):
            stream.close()
            raise UpstreamError(f"The upstream provider's event stream is not available (HTTP {stream.status})")
        return stream

    async def _open(
        self, operation: str, url: str, token_hosts: tuple[str, ...], headers: dict[str, str], refused: str
    ) -> UpstreamStream:
        """GET a URL the upstream handed out, with an API token only for the upstream's own `token_hosts` (a
        404 tries the other tokens: the file may be another account's).

        Only the configured upstream's own origin is fetched as configured; any other URL an upstream puts in
        its answers goes through the address policy."""
        guarded = _origin(url) != self._origin
        host = urlsplit(url).netloc
        try:
            if not any(host == h or host.endswith(f".{h}") for h in token_hosts) or not self.usable:
                return await self._client.stream(url, headers=headers, guarded=guarded, operation=operation)

            def send(credential: Credential) -> Awaitable[UpstreamStream]:
                with_token = {**headers, "Authorization": f"Bearer {credential.token}"}
                return self._client.stream(url, headers=with_token, guarded=guarded, operation=operation)

            return (await self._with_credentials(send, owned=True))[0]
        except AddressRefused as exc:
            raise UpstreamError(refused) from exc

    async def aclose(self) -> None:
        if self._learning is not None:
            self._learning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._learning
        await self._client.aclose()

    async def _learn_signing_secrets(self) -> None:
        """Ask the upstream for each token's webhook signing secret until it answers (not asked again: Replicate
        keeps an account's secret). An upstream without the endpoint has its webhooks re-read for good."""
        while True:
            try:
                secrets = [await self._signing_secret(credential) for credential in self._pool]
                break
            except GatewayError as exc:  # unreachable, or failing for now
                logger.info("%s: webhook signing secret not available yet (%s)", self.name, exc.detail)
                await asyncio.sleep(_SECRET_RETRY_SECONDS)
        try:
            self._signers = [Webhook(secret) for secret in secrets if secret is not None]
        except ValueError:  # binascii.Error included
            self._signers = []
        if len(self._signers) < len(self._pool):
            self._signers = []
            logger.info("%s: the upstream has no usable webhook signing secret; its webhooks are re-read", self.name)

    async def _signing_secret(self, credential: Credential) -> str | None:
        """The secret of the credential's account; None when the upstream says it has none (4xx, or no key)."""
        headers = {"Authorization": f"Bearer {credential.token}"}
        url = f"{self._base}/webhooks/default/secret"
        response = await self._client.request("GET", url, headers=headers, operation="signing_secret")
        if response.status >= 500 or response.status == 429:
            raise UpstreamUnavailable(f"HTTP {response.status}")
        if response.status != 200:
            return None
        answer = response.json()
        key = answer.get("key") if isinstance(answer, dict) else None
        return key if isinstance(key, str) else None

    async def _request(
        self, operation: str, method: str, path: str, body: Any = None, owned: str | None = None
    ) -> tuple[UpstreamResponse, Credential]:
        """Send through the pool (see `_with_credentials`); `owned` is the upstream prediction the call is about.
        An error status is raised mapped. `operation` names the call in the metrics."""

        def send(credential: Credential) -> Awaitable[UpstreamResponse]:
            headers = {"Authorization": f"Bearer {credential.token}", "Content-Type": "application/json"}
            return self._client.request(method, self._base + path, headers=headers, json_body=body, operation=operation)

        response, credential = await self._with_credentials(send, owned is not None, self._owners.get(owned or ""))
        if response.status >= 400:
            raise _error(response)
        if owned is not None:
            self._remember(owned, credential)
        return response, credential

    async def _with_credentials(
        self, send: Callable[[Credential], Awaitable[_Answer]], owned: bool, owner: str | None = None
    ) -> tuple[_Answer, Credential]:
        """Send with the pool's pick, each credential at most once: a 429 cools the credential and moves on
        to the next; for an `owned` object (another account's is 404) so does a 404, `owner` (a fingerprint)
        first. The last answer is returned; UpstreamUnavailable when every credential left is cooling."""
        tried: set[str] = set()
        while True:
            credential = self._pool.pick(skip=tried, prefer=owner)
            answer = await send(credential)
            tried.add(credential.fingerprint)
            if answer.status == 429:
                await self._pool.rate_limited(credential, _retry_after(answer))
            elif answer.status != 404 or not owned or len(tried) == len(self._pool):
                return answer, credential
            if isinstance(answer, UpstreamStream):
                answer.close()

    def _remember(self, upstream_id: str, credential: Credential) -> None:
        self._owners[upstream_id] = credential.fingerprint
        self._owners.move_to_end(upstream_id)
        if len(self._owners) > _OWNERS_REMEMBERED:
            self._owners.popitem(last=False)


def _signed_by(signer: Webhook, callback: Callback) -> bool:
    try:
        signer.verify(callback.body, dict(callback.headers), json_parse=False)
    except (WebhookVerificationError, ValueError, binascii.Error):
        return False
    return True


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        port = None
    return parts.scheme.lower(), parts.hostname, port


def _create_call(request: CreateRequest) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"input": request.input}
    if request.webhook:
        body.update(webhook=request.webhook, webhook_events_filter=WEBHOOK_EVENTS)
    target = request.route.target
    if request.route.kind is TargetKind.VERSION:
        return "/predictions", {"version": target, **body}
    if request.route.kind is TargetKind.MODEL:
        return f"/models/{target}/predictions", body
    return f"/deployments/{target}/predictions", body


def _object_path(upstream_id: str) -> str:
    """A training's id is kept as `trainings/<id>` (its path), a prediction's as the bare id."""
    return f"/{upstream_id}" if upstream_id.startswith(_TRAININGS) else f"/predictions/{upstream_id}"


def _collection(upstream_id: str) -> str:
    return _TRAININGS if upstream_id.startswith(_TRAININGS) else ""


def _from_upstream(data: Any, collection: str = "") -> UpstreamPrediction:
    prediction_id, status = identify(data, "The upstream provider")
    return UpstreamPrediction(
        id=collection + prediction_id,
        status=status,
        output=data.get("output"),
        logs=data.get("logs"),
        error=data.get("error"),
        metrics=data.get("metrics"),
        started_at=data.get("started_at"),
        completed_at=data.get("completed_at"),
        stream_url=_stream_url(data.get("urls")),
    )


def _created_before(item: Any, moment: float) -> bool:
    created = item.get("created_at") if isinstance(item, dict) else None
    try:
        return isinstance(created, str) and datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() < moment
    except ValueError:
        return False


def _stream_url(urls: Any) -> str | None:
    stream = urls.get("stream") if isinstance(urls, dict) else None
    return stream if isinstance(stream, str) and stream.startswith(("https://", "http://")) else None


def _error(response: UpstreamResponse) -> GatewayError:
    """The gateway's error for an upstream's error answer. An answer means the upstream did not take the request
    (a 504 excepted: a proxy in front of the upstream gave up waiting, so the upstream may have taken it)."""
    error = _status_error(response)
    if isinstance(error, UpstreamError) and error.delivery is Delivery.UNKNOWN and response.status != 504:
        error.delivery = Delivery.REFUSED
    return error


def _status_error(response: UpstreamResponse) -> GatewayError:
    """Map an upstream error status to the gateway's error; upstream detail is kept only where it is the tenant's."""
    status = response.status
    if status == 422:
        fields = _problem(response).get("invalid_fields")
        if isinstance(fields, list) and fields:
            return InvalidInput([{k: str(v) for k, v in f.items()} for f in fields if isinstance(f, dict)])
        return UpstreamError("The upstream provider rejected the prediction as invalid", delivery=Delivery.REJECTED)
    if status == 429:
        return UpstreamUnavailable(RATE_LIMITED, retry_after=_retry_after(response))
    if status in (401, 403):
        return UpstreamError("The upstream provider rejected the gateway's credentials")
    if status == 404:
        return UpstreamError("The upstream provider does not know the requested model, version or prediction")
    if status == 503:
        return UpstreamUnavailable("The upstream provider is temporarily unavailable", retry_after=_retry_after(response))
    if status == 504:
        return UpstreamTimeout("The upstream provider timed out")
    return UpstreamError(f"The upstream provider failed with HTTP {status}")


def _problem(response: UpstreamResponse) -> dict[str, Any]:
    try:
        data = response.json()
    except UpstreamError:
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(response: UpstreamResponse | UpstreamStream) -> int | None:
    """Seconds to wait, from the Retry-After header or Replicate's "resets in ~Ns" (only read from a whole answer)."""
    header = response.headers.get("retry-after", "")
    if header.isdigit():
        return int(header)
    if not isinstance(response, UpstreamResponse):
        return None
    match = _RESETS_IN.search(str(_problem(response).get("detail", "")))
    return int(match.group(1)) if match else None
