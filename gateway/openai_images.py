"""The OpenAI-style images API over predictions: an image request runs as a prediction of the catalog model the
operator chose for its operation (admission, limits and usage as for any create), and its files are read back."""

from __future__ import annotations

import base64
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.catalog import Catalog, Reference, RefKind
from gateway.errors import InvalidVersion, NotFound, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.files import Files, Upload
from gateway.files.inputs import FileIdIn
from gateway.keys import KeyRecord
from gateway.outputs import reference_index
from gateway.predictions import CreateOptions, Predictions
from gateway.status import Status
from gateway.store import StoredFile, StoredPrediction

WAIT_SECONDS = 60  # as long as `Prefer: wait` holds a create
_DATA_URI_PREFIX = "data:"

FileUrl = Callable[[StoredFile], str]
"""The gateway URL of a tenant's file, as a prediction input names it."""
KeyActive = Callable[[str], Awaitable[bool]]


class Operation(enum.StrEnum):
    GENERATIONS = "generations"
    EDITS = "edits"


@dataclass(frozen=True)
class ImageRequest:
    """An images request, checked by the HTTP layer: the model's `width`/`height` come from OpenAI's `size`."""

    operation: Operation
    prompt: str
    n: int
    size: tuple[int, int] | None
    model: str | None = None
    image: Upload | None = None
    mask: Upload | None = None


class Images:
    """Runs image requests as predictions and reads their output files."""

    def __init__(
        self, catalog: Catalog, predictions: Predictions, files: Files, file_id_in: FileIdIn, key_active: KeyActive
    ) -> None:
        self._catalog = catalog
        self._predictions = predictions
        self._files = files
        self._file_id_in = file_id_in
        self._key_active = key_active

    async def run(
        self, key: KeyRecord, request: ImageRequest, file_url: FileUrl, gone: Callable[[], Awaitable[bool]]
    ) -> StoredPrediction:
        """The succeeded prediction behind `request`; NotFound when no model serves the operation, UpstreamError
        when the prediction fails, UpstreamTimeout (after cancelling it) when it runs past WAIT_SECONDS, and
        UpstreamUnavailable (after cancelling it) when the process starts to shut down meanwhile."""
        model = self._model_for(request.operation, request.model)
        model_input = await self._input(key.tenant, request, file_url)
        record = await self._predictions.create(key, Reference(RefKind.MODEL, model), CreateOptions(input=model_input))
        record = await self._predictions.wait(record, WAIT_SECONDS, gone)
        if not record.status.terminal:
            await self._predictions.expire(record)
            if self._predictions.shutting_down:  # the wait ended early: the client may retry on another process
                raise UpstreamUnavailable("The gateway is shutting down; retry the request", retry_after=1)
            raise UpstreamTimeout(f"The image model did not finish within {WAIT_SECONDS} seconds")
        if record.status is not Status.SUCCEEDED:
            raise UpstreamError(f"The image model's prediction {record.id} {record.status}: {record.doc.get('error')}")
        return record

    def _model_for(self, operation: Operation, requested: str | None) -> str:
        """The catalog model to run: the one the request names, else the operator's choice for the operation."""
        configured: str | None = getattr(self._catalog.images, operation.value)
        if configured is None:
            raise NotFound(f"No model serves images/{operation.value} on this gateway")
        if requested is None:
            return configured
        try:
            return self._catalog.model(requested).name
        except NotFound:
            raise InvalidVersion(f"The model {requested} does not exist (or you may not use it)") from None

    async def read_outputs(self, record: StoredPrediction) -> list[bytes]:
        """The bytes of every output file of a finished prediction, in order."""
        return [await self._read(record, output) for output in outputs_of(record.doc["output"])]

    async def _input(self, tenant: str, request: ImageRequest, file_url: FileUrl) -> dict[str, Any]:
        model_input: dict[str, Any] = {"prompt": request.prompt, "num_outputs": request.n}
        if request.size is not None:
            model_input["width"], model_input["height"] = request.size
        for name, upload in (("image", request.image), ("mask", request.mask)):
            if upload is not None:
                model_input[name] = file_url(await self._files.create(tenant, upload))
        return model_input

    async def _read(self, record: StoredPrediction, output: str) -> bytes:
        index = reference_index(output)
        if index is not None:
            stream = await self._predictions.open_output(record.id, index, self._key_active)
            return b"".join([chunk async for chunk in stream.chunks()])
        if output.startswith(_DATA_URI_PREFIX):
            return base64.b64decode(output.partition(",")[2])
        file_id = self._file_id_in(output)
        if file_id is None:
            raise UpstreamError(f"The output of prediction {record.id} is not a file the gateway can read")
        return await self._files.read(await self._files.get(record.tenant, file_id))


def outputs_of(output: Any) -> list[str]:
    """A prediction's output as a list of files (a single file is a list of one; nothing is an empty list)."""
    if isinstance(output, str):
        return [output]
    if isinstance(output, list):
        return [item for item in output if isinstance(item, str)]
    return []
