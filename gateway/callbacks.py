"""Capabilities for upstreams calling the gateway back: one token per prediction, one per model server.

From an upstream that can be asked (Replicate), a callback only tells the gateway to look: the receiver
re-reads the prediction upstream, so a forged payload can change nothing. A Cog server cannot be asked, so
its payload is trusted only with both the URL's token and that server's bearer token (`server_token`).
"""

from __future__ import annotations

from gateway.signing import Purpose, Signer

_SERVER_TOKEN_LENGTH = 64


class Callbacks:
    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def token(self, prediction_id: str) -> str:
        """The token in the webhook URL an upstream gets for one prediction."""
        return self._signer.token(Purpose.UPSTREAM_WEBHOOK, prediction_id)

    def verify(self, prediction_id: str, token: str) -> bool:
        return self._signer.verify(Purpose.UPSTREAM_WEBHOOK, prediction_id, token)

    def server_token(self, server_url: str) -> str:
        """The bearer token a managed model server sends with its webhooks (its WEBHOOK_AUTH_TOKEN)."""
        return self._signer.token(Purpose.SERVER_WEBHOOK, server_url, _SERVER_TOKEN_LENGTH)
