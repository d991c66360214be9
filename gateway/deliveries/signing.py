"""Standard Webhooks signatures (the scheme Replicate uses) and the secrets they are made with."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

from gateway.store import DeliveryStore

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """`whsec_` and 32 random bytes in padded standard base64: no `_` or `-` after the prefix, because the
    Python client splits the secret on `_` and the JS client decodes it with `atob`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def signed_headers(secret: str, webhook_id: str, body: str, sent_at: float) -> dict[str, str]:
    """The headers of one attempt: `webhook-signature` signs `{id}.{timestamp}.{body}` with the secret."""
    timestamp = int(sent_at)
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), body)
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


class TenantSecrets:
    """Each tenant's signing secret, made on first use and shared by every gateway process; a secret never
    changes, so each process keeps the ones it has read."""

    def __init__(self, store: DeliveryStore) -> None:
        self._store = store
        self._known: dict[str, str] = {}

    async def get(self, tenant: str) -> str:
        if tenant not in self._known:
            self._known[tenant] = await self._store.tenant_secret(tenant, new_secret())
        return self._known[tenant]
