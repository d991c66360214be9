"""Requests to upstreams: a stored prediction's input with its file URLs made fetchable, and where to call back."""

from __future__ import annotations

from collections.abc import Callable

from gateway.catalog import Route, TargetKind
from gateway.files import InputFiles
from gateway.files.inputs import DownloadUrl
from gateway.providers import CreateRequest
from gateway.store import StoredPrediction

WebhookUrl = Callable[[str, bool], str | None]
"""(prediction id, for a server beside the gateway?) -> where the upstream reports, or None."""
DownloadUrls = Callable[[bool], DownloadUrl | None]
"""(for a server beside the gateway?) -> how to sign file URLs for it, or None to pass files inline."""


class UpstreamRequests:
    def __init__(self, inputs: InputFiles, webhook_url: WebhookUrl, download_urls: DownloadUrls) -> None:
        self._inputs = inputs
        self._webhook_url = webhook_url
        self._download_urls = download_urls

    async def build(self, record: StoredPrediction, route: Route, *, local: bool) -> CreateRequest:
        """The request for `route`; `local` when the upstream runs beside the gateway (its own model servers)."""
        upstream_input = await self._inputs.resolve(record.tenant, record.doc["input"], self._download_urls(local))
        webhook = self._webhook_url(record.id, local)
        return CreateRequest(record.id, record.doc["model"], route, upstream_input, webhook, record.tenant)

    def webhook(self, record: StoredPrediction) -> str | None:
        """Where a remote upstream was asked to report on the prediction (None when it was not)."""
        return self._webhook_url(record.id, False)

    async def for_server(self, record: StoredPrediction) -> CreateRequest:
        """The request that runs a queued prediction on a server of a slot provider's own (beside the gateway)."""
        return await self.build(record, Route(record.provider, TargetKind.SERVER, ""), local=True)
