"""Output files that stay on an upstream (Replicate's delivery host): tenants see signed gateway links.

The stored document keeps a reference (`gateway-output:<n>/<name>`) in place of each upstream URL; the API
turns references into absolute links on whatever address the tenant used, and serves a link by streaming
the file from the upstream with the operator's credentials. Links are capabilities: they work without a
key (as JS clients fetch outputs) and with an unrelated one (as the Python client does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from gateway.signing import Purpose, Signer

_REFERENCE = "gateway-output:"
_PARSED = re.compile(rf"^{_REFERENCE}(?P<index>\d+)/(?P<name>.*)$")

LinkTo = Callable[[int, str], str]
"""The public link of the output at an index, with its file name."""


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


def expand(output: Any, link_to: LinkTo) -> Any:
    """`output` with each reference turned into its link."""
    if isinstance(output, str):
        match = _PARSED.match(output)
        return output if match is None else link_to(int(match["index"]), match["name"])
    if isinstance(output, list):
        return [expand(item, link_to) for item in output]
    if isinstance(output, dict):
        return {key: expand(item, link_to) for key, item in output.items()}
    return output


def reference_index(value: str) -> int | None:
    """The index of the upstream output a stored reference names; None when `value` is not a reference."""
    match = _PARSED.match(value)
    return None if match is None else int(match["index"])


class OutputSignatures:
    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def sign(self, prediction_id: str, index: int, expiry: int) -> str:
        return self._signer.token(Purpose.OUTPUT_LINK, f"{prediction_id}/{index}/{expiry}")

    def verify(self, prediction_id: str, index: int, expiry: int, signature: str) -> bool:
        return self._signer.verify(Purpose.OUTPUT_LINK, f"{prediction_id}/{index}/{expiry}", signature)
