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


def map_strings(output: Any, change: Callable[[str], str]) -> Any:
    """`output` with each string in it, at any depth (dictionary keys excepted), replaced by `change(string)`."""
    if isinstance(output, str):
        return change(output)
    if isinstance(output, list):
        return [map_strings(item, change) for item in output]
    if isinstance(output, dict):
        return {key: map_strings(item, change) for key, item in output.items()}
    return output


def hide(output: Any) -> tuple[Any, list[str]]:
    """`output` with each http(s) URL replaced by a reference, and those URLs in order."""
    urls: list[str] = []

    def replace(value: str) -> str:
        if not value.startswith(("https://", "http://")):
            return value
        urls.append(value)
        name = urlsplit(value).path.rsplit("/", 1)[-1] or "output"
        return f"{_REFERENCE}{len(urls) - 1}/{name}"

    return map_strings(output, replace), urls


def expand(output: Any, link_to: LinkTo) -> Any:
    """`output` with each reference turned into its link."""

    def linked(value: str) -> str:
        match = _PARSED.match(value)
        return value if match is None else link_to(int(match["index"]), match["name"])

    return map_strings(output, linked)


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
