"""What `gateway serve` prints for a newcomer: a demo tenant key and a ready-to-paste client snippet."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.audit import Actor
from gateway.catalog import Catalog
from gateway.errors import NotFound
from gateway.keys import KeyService, NewKeySpec, parse_token

DEMO_TENANT = "demo"
_EXAMPLES = Path(__file__).resolve().parents[1] / "models" / "inpaint" / "examples"


async def demo_token(keys: KeyService, path: Path, actor: Actor) -> str:
    """The demo tenant's token kept in `path` (owner-only), made anew (by `actor`) when missing or no longer valid."""
    kept = parse_token(path.read_text().strip()) if path.exists() else None
    if kept is not None and await _usable(keys, kept.key_id, kept.secret):
        return str(kept)
    _, token = await keys.create(NewKeySpec(tenant=DEMO_TENANT, name="created by gateway serve"), actor=actor)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(str(token))
    return str(token)


async def _usable(keys: KeyService, key_id: str, secret: str) -> bool:
    try:
        record = await keys.get(key_id)
    except NotFound:
        return False
    now = time.time()
    return record.matches(secret, now) and not record.disabled and not record.expired(now)


def snippet(base_url: str, catalog: Catalog, token_path: Path) -> str:
    """Python that runs the catalog's local demo model (or its first model) through this gateway.

    It reads the key from its file, so that the key itself never reaches a terminal's scrollback or a log."""
    models = catalog.models()
    local = [m for m in models if any(catalog.providers[r.provider].kind == "cog" for r in m.versions[0].routes)]
    model = (local or models)[0]
    reference = f"{model.name}:{model.versions[0].id}"
    if local:
        inputs = f'{{"image": open("{_EXAMPLES / "photo.png"}", "rb"), "mask": open("{_EXAMPLES / "mask.png"}", "rb")}}'
    else:
        inputs = '{"image": "https://…", "mask": "https://…"}'
    return "\n".join(
        [
            "import replicate",
            "",
            f'client = replicate.Client(api_token=open("{token_path.resolve()}").read().strip(), base_url="{base_url}")',
            f'print(client.run("{reference}", input={inputs}))',
        ]
    )
