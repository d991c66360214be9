"""The one signer behind every capability URL the gateway hands out.

Each purpose signs with its own key, derived from one secret that all gateway processes share, so a token
made for one kind of URL is never valid for another. Signatures are HMAC-SHA256.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

SECRET_NAME = "capabilities"  # the name of the shared secret in the store


class Purpose(enum.Enum):
    """What a signature grants; the value is the key-derivation label."""

    UPSTREAM_WEBHOOK = "upstream webhook"  # an upstream reporting on one prediction
    SERVER_WEBHOOK = "model server webhook"  # the bearer token a managed model server sends
    OUTPUT_LINK = "output link"  # reading an output file an upstream keeps
    FILE_DOWNLOAD = "file download"  # reading a stored file until an expiry
    OUTPUT_UPLOAD = "output upload"  # a model server storing its output files
    EVENT_STREAM = "event stream"  # reading the event stream of one prediction


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._keys = {purpose: hmac.new(secret, purpose.value.encode(), hashlib.sha256).digest() for purpose in Purpose}

    def digest(self, purpose: Purpose, message: str) -> bytes:
        return hmac.new(self._keys[purpose], message.encode(), hashlib.sha256).digest()

    def token(self, purpose: Purpose, message: str, length: int = 32) -> str:
        """The first `length` hex digits of the signature: short enough for a URL, long enough to never be guessed."""
        return self.digest(purpose, message).hex()[:length]

    def verify(self, purpose: Purpose, message: str, token: str, length: int = 32) -> bool:
        return same_text(self.token(purpose, message, length), token)


def same_text(expected: str, given: str) -> bool:
    """Constant-time equality of two strings, whatever characters a client sent (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))
