"""Output files that stay on an upstream (Replicate's delivery host): tenants see signed gateway links.

The stored document keeps a reference (`gateway-output:<n>/<name>`) in place of each upstream URL; the API
turns references into absolute links on whatever address the tenant used, and serves a link by streaming
the file from the upstream with the operator's credentials. Links are capabilities: they work without a
key (as JS clients fetch outputs) and with an unrelated one (as the Python client does).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any
from urllib.parse import quote, urlsplit

_REFERENCE = "gateway-output:"
_PARSED = re.compile(rf"^{_REFERENCE}(?P<index>\d+)/(?P<name>.*)$")


def hide(output: Any) -> tuple[Any, list[str]]:
    """`output` with each http(s) URL replaced by a reference, and those URLs in order."""
    urls: list[str] = []

    def replace(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            urls.append(value)
            name = urlsplit(value).path.rsplit("/", 1)[-1] or "output"
            return f"{_REFERENCE}{len(urls) - 1}/{name}"
        if isinstance(value, list):
            return [replace(item) for item in value]
        if isinstance(value, dict):
            return {key: replace(item) for key, item in value.items()}
        return value

    return replace(output), urls


class OutputLinks:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def expand(self, prediction_id: str, output: Any, api_root: str) -> Any:
        """`output` with each reference turned into its link under `api_root`."""
        if isinstance(output, str):
            match = _PARSED.match(output)
            if match is None:
                return output
            index, name = int(match["index"]), quote(match["name"])
            return f"{api_root}/predictions/{prediction_id}/outputs/{index}/{self.signature(prediction_id, index)}/{name}"
        if isinstance(output, list):
            return [self.expand(prediction_id, item, api_root) for item in output]
        if isinstance(output, dict):
            return {key: self.expand(prediction_id, item, api_root) for key, item in output.items()}
        return output

    def signature(self, prediction_id: str, index: int) -> str:
        return hmac.new(self._secret, f"{prediction_id}/{index}".encode(), hashlib.sha256).hexdigest()[:32]

    def verify(self, prediction_id: str, index: int, signature: str) -> bool:
        return hmac.compare_digest(self.signature(prediction_id, index), signature)
