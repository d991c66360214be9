"""The capability URLs the gateway hands out and recognises: their shapes, signed with the one signer.

`Links` serves the layers below the API (which receive its methods as plain callables from the
composition root) and the endpoints that answer these URLs.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

from gateway.callbacks import Callbacks
from gateway.config import DEFAULT_OUTPUT_LINK_SECONDS
from gateway.files.signing import DownloadSignatures, UploadTokens
from gateway.outputs import OutputSignatures, expand, map_strings
from gateway.predictions.trainings import public_output
from gateway.signing import Signer
from gateway.store import TRAINING, StoredFile, StoredPrediction
from gateway.streams import StreamSignatures

# Replicate leaves a prediction's key out until it has a value (`started_at`, `completed_at`, `metrics`, …):
# its document allows null only for these.
_NULLABLE_PREDICTION_KEYS = frozenset({"output", "error"})
_TRAINING_KEYS = (
    "id", "model", "version", "input", "logs", "error", "status", "created_at", "started_at", "completed_at", "source",
    "metrics",
)  # fmt: skip
_FILE_PATH = re.compile(r"^(?:/replicate)?/v1/files/(?P<id>[A-Za-z0-9_-]{1,200})(?:/download(?:/[^/]+/[^/]+/[^/]+)?)?/?$")


def file_id_in(url: str) -> str | None:
    """The file id when `url` is a gateway file URL (`…/v1/files/{id}[/download…]`, on any host), else None."""
    if not url.startswith(("https://", "http://")):
        return None
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    match = _FILE_PATH.match(path)
    return match["id"] if match else None


class Links:
    """URLs on the gateway's public address, or on its local one for model servers running beside it."""

    def __init__(
        self,
        signer: Signer,
        public_base_url: str | None,
        local_base_url: str,
        *,
        output_link_seconds: int = DEFAULT_OUTPUT_LINK_SECONDS,
    ) -> None:
        self.output_link_seconds = output_link_seconds
        self.callbacks = Callbacks(signer)
        self.outputs = OutputSignatures(signer)
        self.downloads = DownloadSignatures(signer)
        self.uploads = UploadTokens(signer)
        self.streams = StreamSignatures(signer)
        self.public_base = public_base_url.rstrip("/") if public_base_url else None
        self.local_base = local_base_url.rstrip("/")

    def upstream_webhook(self, prediction_id: str, local: bool) -> str | None:
        """Where an upstream should report on a prediction; None for a remote upstream when the gateway has
        no public address (it is polled instead)."""
        base = self.local_base if local else self.public_base
        if base is None:
            return None
        return f"{base}/webhooks/upstream/{prediction_id}?token={self.callbacks.token(prediction_id)}"

    def upload(self, server_url: str, base: str | None = None) -> str:
        """The `--upload-url` of a model server (on the local address unless `base` says otherwise)."""
        return f"{base or self.local_base}/uploads/{self.uploads.token(server_url)}/"

    def file_download(self, file: StoredFile, base: str, expires_at: float | None = None) -> str:
        """A signed URL that reads the file without an API key until `expires_at` (by default, as long as the file lives).

        Of Replicate's two forms, the gateway hands out the path form: Cog servers drop the query string of
        the URL an upload answers with, and a URL ending in the file name tells clients what they hold."""
        expiry = int(file.expires_ms / 1000 if expires_at is None else expires_at)
        signature = self.downloads.sign(file.tenant, file.id, expiry)
        return f"{base.rstrip('/')}/v1/files/{file.id}/download/{expiry}/{signature}/{quote(file.name, safe='')}"

    def api_root(self) -> str:
        """The API prefix on the gateway's public address (else its local one), for documents sent unasked
        (webhook bodies)."""
        return f"{self.public_base or self.local_base}/v1"

    def prediction(self, record: StoredPrediction, api_root: str) -> dict[str, Any]:
        """The public prediction object: the stored document plus absolute URLs under `api_root`, without the
        keys that have no value yet (records stored before that rule may hold them as null)."""
        if record.kind == TRAINING:
            return self.training(record, api_root)
        url = f"{api_root}/predictions/{record.id}"
        output = self._output(record, api_root)
        urls = {"get": url, "cancel": f"{url}/cancel", "web": url}
        if record.streams:  # only then: the Python client takes a `stream` key as a promise that it works
            urls["stream"] = self.stream(api_root, record.id)
        known = {key: value for key, value in record.doc.items() if value is not None or key in _NULLABLE_PREDICTION_KEYS}
        return {**known, "output": output, "urls": urls}

    def training(self, record: StoredPrediction, api_root: str) -> dict[str, Any]:
        """The public training object: the keys of Replicate's training document that have a value (it allows
        null only for `error`), the new version under the tenant's destination, URLs under `api_root`."""
        url = f"{api_root}/trainings/{record.id}"
        doc = record.doc
        shown = {key: doc[key] for key in _TRAINING_KEYS if doc.get(key) is not None or key == "error"}
        output = public_output(self._output(record, api_root), doc["upstream_destination"], doc["destination"])
        if output is not None:
            shown["output"] = output
        return {**shown, "urls": {"get": url, "cancel": f"{url}/cancel"}}

    def _output(self, record: StoredPrediction, api_root: str) -> Any:
        """The record's output with signed links to the files the upstream keeps, and the gateway's own files
        under `api_root`."""
        # Links expire a fixed time after the prediction was created, so every read hands out the same ones.
        expiry = record.created_ms // 1000 + self.output_link_seconds
        output = expand(record.doc.get("output"), lambda index, name: self.output(api_root, record.id, index, name, expiry))
        return map_strings(output, lambda value: self._on_root(value, api_root))

    def _on_root(self, value: str, api_root: str) -> str:
        """A URL of one of the gateway's own files (a local model's output keeps the URL its server uploaded it
        to, under `/v1`) moved under `api_root`, so that `/replicate/v1` hands out only `/replicate/v1` URLs."""
        for base in (self.public_base, self.local_base):
            own = f"{base}/v1/files/"
            if base is not None and value.startswith(own) and file_id_in(value):
                return f"{api_root}/files/{value.removeprefix(own)}"
        return value

    def stream(self, api_root: str, prediction_id: str) -> str:
        """The signed URL of a prediction's event stream: outside `/v1/files/` (where the JS client would take
        every output for a file) and readable with no key, as the JS and Go clients send none."""
        return f"{api_root}/predictions/{prediction_id}/stream/{self.streams.sign(prediction_id)}"

    def output(self, api_root: str, prediction_id: str, index: int, name: str, expiry: int) -> str:
        """The signed link to an output file an upstream keeps, valid until `expiry` (Unix time)."""
        signature = self.outputs.sign(prediction_id, index, expiry)
        return f"{api_root}/predictions/{prediction_id}/outputs/{index}/{expiry}/{signature}/{quote(name)}"
