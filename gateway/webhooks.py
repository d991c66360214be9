"""Webhooks from upstreams back to the gateway: per-prediction capability URLs.

From an upstream that can be asked (Replicate), a callback only tells the gateway to look: the receiver
re-reads the prediction upstream, so a forged payload can change nothing. A Cog server cannot be asked, so
its payload is trusted only with both the URL's token and that server's bearer token (`server_token`).
"""

from __future__ import annotations

import hashlib
import hmac


class UpstreamHooks:
    def __init__(self, secret: bytes, public_base_url: str | None, local_base_url: str) -> None:
        self._secret = secret
        self._public = public_base_url.rstrip("/") if public_base_url else None
        self._local = local_base_url.rstrip("/")

    def token(self, prediction_id: str) -> str:
        return hmac.new(self._secret, prediction_id.encode(), hashlib.sha256).hexdigest()[:32]

    def verify(self, prediction_id: str, token: str) -> bool:
        return hmac.compare_digest(self.token(prediction_id), token)

    def url(self, prediction_id: str, local: bool = False) -> str | None:
        """Where the upstream should call back: model servers next to the gateway use its local address;
        a remote upstream needs the public one, and gets None (it is polled instead) when there is none."""
        base = self._local if local else self._public
        if base is None:
            return None
        return f"{base}/webhooks/upstream/{prediction_id}?token={self.token(prediction_id)}"

    def server_token(self, server_url: str) -> str:
        """The bearer token a managed model server sends with its webhooks (its WEBHOOK_AUTH_TOKEN)."""
        return hmac.new(self._secret, f"server {server_url}".encode(), hashlib.sha256).hexdigest()
