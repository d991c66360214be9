"""Which environment variables a deployment may give the gateway: its settings, and the secrets its catalog names."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import AliasChoices

from gateway.config import Settings


def setting_names() -> set[str]:
    """Every variable Settings reads: GATEWAY_<field>, and the aliases a field accepts (REDIS_URL)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names |= set(alias.choices) if isinstance(alias, AliasChoices) else {f"{prefix}{name}".upper()}
    return names


def catalog_secrets(catalog: Path) -> set[str]:
    """The variables a catalog's providers read their tokens from."""
    providers = tomllib.loads(catalog.read_text()).get("providers", {}).values()
    names = {name for provider in providers for name in provider.get("token_env", [])}
    return names | {provider["webhook_token_env"] for provider in providers if "webhook_token_env" in provider}


def unknown_variables(names: set[str], catalog: Path) -> set[str]:
    """The names that neither the gateway nor its catalog would read (the S3 credentials are settings too)."""
    return names - setting_names() - catalog_secrets(catalog)
