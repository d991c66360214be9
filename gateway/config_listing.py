"""Catalog entries that only describe what the gateway offers: collections, hardware and model examples.

A leaf (pydantic only): `config` builds its catalog schema from these and checks their references."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"  # Replicate's collection slugs: lowercase with dashes


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CollectionConfig(_Strict):
    """A named group of catalog models (`[[collections]]`), served by `GET /v1/collections`."""

    slug: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1)
    description: str = ""
    full_description: str | None = None  # markdown
    models: list[str] = []  # owner/name of catalog models, in the order shown


class HardwareConfig(_Strict):
    """One hardware SKU a provider offers (`hardware = [{sku, name}]` on a provider)."""

    sku: str = Field(min_length=1)
    name: str = Field(min_length=1)


class ExampleConfig(_Strict):
    """An example run of a model (`examples = [{input, output}]`), shown as a succeeded prediction."""

    input: dict[str, Any]
    output: Any = None
