"""Each package declares its surface: every exported name exists, and nothing private is exported."""

import importlib

import pytest

PACKAGES = ["gateway.files", "gateway.predictions", "gateway.providers", "gateway.routing", "gateway.store"]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_exists_and_is_public(name: str) -> None:
    package = importlib.import_module(name)
    exported = package.__all__
    for member in exported:
        assert not member.startswith("_")
        assert hasattr(package, member), f"{name}.{member}"
