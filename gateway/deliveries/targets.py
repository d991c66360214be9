"""The create-time check of a webhook URL: an address webhooks may not reach is a 422, not a silent drop."""

from __future__ import annotations

from gateway.errors import InvalidInput
from gateway.ssrf import UrlGuard


class WebhookTargets:
    def __init__(self, guard: UrlGuard) -> None:
        self._guard = guard

    async def check(self, url: str) -> None:
        """InvalidInput unless `url`'s host, and every address it resolves to now, may receive webhooks (the
        address actually connected to is checked again on each attempt)."""
        refusal = await self._guard.refusal(url)
        if refusal is not None:
            raise InvalidInput([{"type": "unsafe_url", "field": "webhook", "description": refusal}])
