"""Signatures of file download URLs and the tokens of output upload URLs.

A download signature is the HMAC-SHA256 of `"{owner} {id} {expiry}"` in base64: standard base64 in the query
form Replicate uses (`?owner=&expiry=&signature=`), URL-safe in the path form the gateway hands out.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from gateway.errors import Forbidden
from gateway.signing import Purpose, Signer


class DownloadSignatures:
    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def sign(self, owner: str, file_id: str, expiry: int) -> str:
        """URL-safe base64 without padding."""
        return base64.urlsafe_b64encode(self._digest(owner, file_id, expiry)).decode().rstrip("=")

    def verify(self, owner: str, file_id: str, expiry: int | str, signature: str) -> bool:
        given = _signature_bytes(signature)
        return given is not None and hmac.compare_digest(self._digest(owner, file_id, expiry), given)

    def _digest(self, owner: str, file_id: str, expiry: int | str) -> bytes:
        return self._signer.digest(Purpose.FILE_DOWNLOAD, f"{owner} {file_id} {expiry}")


class UploadTokens:
    """The token in a model server's `--upload-url`: only its holders may add output files."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def token(self, server_id: str) -> str:
        name = base64.urlsafe_b64encode(server_id.encode()).decode().rstrip("=")
        return f"{name}.{self._signer.token(Purpose.OUTPUT_UPLOAD, name)}"

    def check(self, token: str) -> None:
        """Forbidden unless `token` came from `token()`."""
        name, _, mac = token.rpartition(".")
        if not name or not self._signer.verify(Purpose.OUTPUT_UPLOAD, name, mac):
            raise Forbidden("The upload URL is not valid")


def _signature_bytes(text: str) -> bytes | None:
    """A signature in standard or URL-safe base64, padded or not; None if it is neither."""
    # A '+' in a query string that was not percent-encoded arrives as ' '; base64 has no spaces.
    standard = text.replace(" ", "+").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
