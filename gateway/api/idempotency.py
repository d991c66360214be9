"""The `Idempotency-Key` request header of creates (draft-ietf-httpapi-idempotency-key-header): its check, and
the fingerprint of the request it is sent with."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from starlette.requests import Request

from gateway.errors import BadRequest
from gateway.predictions import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")  # printable ASCII, as a structured-field string holds


def idempotency_key(request: Request, body: dict[str, Any]) -> IdempotencyKey | None:
    """The request's key with its fingerprint (method, path, canonical JSON body); None without the header.
    BadRequest for a key that is empty, longer than 255 characters or not printable ASCII."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    if not _KEY.fullmatch(value):
        raise BadRequest(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    request_line = f"{request.method} {request.url.path}\n"
    return IdempotencyKey(value, hashlib.sha256((request_line + canonical).encode()).hexdigest())
