import ipaddress
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import Settings, load_catalog, with_model_servers
from gateway.errors import ConfigError
from gateway.ssrf import AddressPolicy

GOOD_VERSION = "a" * 64


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


PROVIDER = '[providers.up]\nkind = "replicate"\nbase_url = "https://up.example/v1"\n'


@pytest.mark.parametrize(
    "body,message",
    [
        (
            PROVIDER
            + f'[[models]]\nname = "bad name"\n[[models.versions]]\nid = "{GOOD_VERSION}"\nroutes = [{{provider = "up", version = "x"}}]\n',
            "models[0].name: 'bad name' is not an owner/name",
        ),
        (
            PROVIDER + '[[models]]\nname = "a/b"\n[[models.versions]]\nid = "XYZ"\nroutes = [{provider = "up", version = "x"}]\n',
            "models[0].versions[0].id: must be 64 lowercase hex characters",
        ),
        (
            PROVIDER
            + f'[[models]]\nname = "a/b"\n[[models.versions]]\nid = "{GOOD_VERSION}"\nroutes = [{{provider = "nope", version = "x"}}]\n',
            "models[0].versions[0].routes[0].provider: unknown provider 'nope'",
        ),
        (
            PROVIDER
            + f'[[models]]\nname = "a/b"\n[[models.versions]]\nid = "{GOOD_VERSION}"\nroutes = [{{provider = "up", version = "x", model = "a/b"}}]\n',
            "models[0].versions[0].routes[0]: a route needs exactly one of version, model or deployment",
        ),
        (
            '[providers.up]\nkind = "replicate"\nbase_url = "ftp://x"\n',
            "providers.up.base_url: must be an http:// or https:// URL",
        ),
        (
            '[providers.up]\nkind = "replicate"\nbase_url = "https://x"\ntoken_env = ["r8_secret value"]\n',
            "providers.up.token_env",
        ),
        ('[providers.up]\nkind = "magic"\nbase_url = "https://x"\n', "providers.up.kind"),
        (
            '[providers.up]\nkind = "replicate"\nbase_url = "https://x"\ntoken = "r8_literal"\n',
            "providers.up.token: Extra inputs are not permitted",
        ),
        ("providers = [", "not valid TOML"),
        (PROVIDER + '[[deployments]]\nname = "a/d"\nmodel = "a/missing"\n', "deployments[0].model: unknown model 'a/missing'"),
        (PROVIDER + '[openai.images]\nedits = "a/missing"\n', "openai.images.edits: unknown model 'a/missing'"),
        (PROVIDER + '[openai.images]\nvariations = "a/b"\n', "openai.images.variations: Extra inputs are not permitted"),
        (
            PROVIDER
            + f'[[models]]\nname = "a/b"\n[[models.versions]]\nid = "{GOOD_VERSION}"\ntrainable = true\nroutes = [{{provider = "up", version = "x"}}]\n',
            "models[0].versions[0].trainable: no version route to a provider with training_destination_owner",
        ),
        (
            '[providers.up]\nkind = "cog"\nservers = ["http://127.0.0.1:5000"]\ntraining_destination_owner = "op"\n',
            "only a replicate provider runs trainings (training_destination_owner)",
        ),
        (PROVIDER + 'training_destination_owner = "Op Account"\n', "providers.up.training_destination_owner"),
    ],
)
def test_bad_catalogs_fail_naming_file_field_and_problem(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_catalog(path, {})
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_schema_file_and_missing_catalog_are_named(tmp_path: Path) -> None:
    body = (
        PROVIDER
        + f'[[models]]\nname = "a/b"\n[[models.versions]]\nid = "{GOOD_VERSION}"\nschema = "nope.json"\nroutes = [{{provider = "up", version = "x"}}]\n'
    )
    with pytest.raises(ConfigError, match=r"models\[0\]\.versions\[0\]\.schema: schema file .*nope.json not found"):
        load_catalog(_write(tmp_path, body), {})
    with pytest.raises(ConfigError, match="catalog file not found"):
        load_catalog(tmp_path / "absent.toml", {})


def test_the_shipped_catalog_loads_with_the_seed_model() -> None:
    catalog = load_catalog(Path(__file__).parents[2] / "config" / "catalog.toml", {"REPLICATE_API_TOKEN": "r8_x"})
    model = catalog.models[0]
    assert model.name == "stability-ai/stable-diffusion-inpainting"
    assert model.versions[0].id == "95b7223104132402a9ae91cc677285bc5eb997834bd2349fa486f53910fd68b3"
    assert model.aliases == {"steps": "num_inference_steps", "cfg_scale": "guidance_scale", "sampler_name": "scheduler"}
    assert model.versions[0].openapi_schema is not None


def test_settings_read_the_gateway_prefix_and_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "9001")
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/2")
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "admin-secret-of-the-operator")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.port, settings.redis_url) == (9001, "redis://example:6379/2")
    assert "admin-secret" not in repr(settings)


@pytest.mark.parametrize("token", ["", "   ", "short-token"])
def test_an_empty_or_weak_admin_token_stops_the_gateway_at_start(monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", token)
    with pytest.raises(ValueError, match="GATEWAY_ADMIN_TOKEN must be at least 16 characters"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_address_policy_comes_from_the_cidr_list_and_the_allow_all_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ALLOWED_PRIVATE_CIDRS", "127.0.0.1/32, 10.0.0.0/8")
    policy = Settings(_env_file=None).address_policy()  # type: ignore[call-arg]
    assert policy == AddressPolicy((ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8")))
    monkeypatch.setenv("GATEWAY_ALLOW_PRIVATE_INPUT_URLS", "true")
    assert Settings(_env_file=None).address_policy().allow_all  # type: ignore[call-arg]
    monkeypatch.setenv("GATEWAY_ALLOWED_PRIVATE_CIDRS", "10.0.0.0/8,localhost")
    with pytest.raises(ValidationError, match="'localhost' is not a CIDR"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_file_storage_is_local_or_a_bucket_with_the_standard_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).object_store() is None  # type: ignore[call-arg]
    monkeypatch.setenv("GATEWAY_FILE_STORAGE", "s3://gateway-files/prod/blobs/")
    monkeypatch.setenv("GATEWAY_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOPERATOR")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret-access-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.object_store() == ("gateway-files", "prod/blobs")
    assert (settings.s3_endpoint_url, settings.aws_region) == ("http://minio:9000", "eu-west-1")
    assert "operator-secret" not in repr(settings) and "AKIAOPERATOR" not in repr(settings)
    monkeypatch.setenv("AWS_REGION", "us-west-2")  # the newer name wins, as in the AWS SDKs
    assert Settings(_env_file=None).aws_region == "us-west-2"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/var/files", "'/var/files' is neither 'local' nor s3://<bucket>[/<prefix>]"),
        ("s3://", "'' is not an S3 bucket name"),
        ("s3://Gateway_Files/x", "'Gateway_Files' is not an S3 bucket name"),
    ],
)
def test_a_bad_file_storage_stops_the_gateway_at_start(monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    monkeypatch.setenv("GATEWAY_FILE_STORAGE", value)
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_model_servers_override_the_count_of_managed_providers_only(tmp_path: Path) -> None:
    body = PROVIDER + '[providers.local]\nkind = "cog"\nmanaged = { model_dir = "m", count = 2, base_port = 6000 }\n'
    catalog = with_model_servers(load_catalog(_write(tmp_path, body), {}), 3)
    assert catalog.providers["local"].server_urls() == [f"http://127.0.0.1:{6000 + i}" for i in range(3)]
    assert catalog.providers["local"].managed.model_dir == (tmp_path / "m").resolve()
    assert catalog.providers["up"].managed is None
    assert with_model_servers(catalog, None) is catalog
