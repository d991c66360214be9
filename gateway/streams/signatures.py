"""Stream URLs are capabilities: the signature of the prediction id is the only credential they need."""

from __future__ import annotations

from gateway.signing import Purpose, Signer


class StreamSignatures:
    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def sign(self, prediction_id: str) -> str:
        return self._signer.token(Purpose.EVENT_STREAM, prediction_id)

    def verify(self, prediction_id: str, signature: str) -> bool:
        return self._signer.verify(Purpose.EVENT_STREAM, prediction_id, signature)
