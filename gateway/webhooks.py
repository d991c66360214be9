"""Webhooks from upstreams back to the gateway: per-prediction capability URLs.

An upstream's callback only tells the gateway to look: the receiver re-reads the prediction from the
upstream itself, so a forged or replayed payload can change nothing.
"""

from __future__ import annotations

import hashlib
import hmac


class UpstreamHooks:
    def __init__(self, secret: bytes, public_base_url: str | None) -> None:
        self._secret = secret
        self._base = public_base_url.rstrip("/") if public_base_url else None

    def token(self, prediction_id: str) -> str:
        return hmac.new(self._secret, prediction_id.encode(), hashlib.sha256).hexdigest()[:32]

    def verify(self, prediction_id: str, token: str) -> bool:
        return hmac.compare_digest(self.token(prediction_id), token)

    def url(self, prediction_id: str) -> str | None:
        """Where the upstream should call back, or None when the gateway has no public address."""
        if self._base is None:
            return None
        return f"{self._base}/webhooks/upstream/{prediction_id}?token={self.token(prediction_id)}"
