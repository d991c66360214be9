"""Typed settings (environment `GATEWAY_*`, `.env`) and loading of the catalog file."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import KeysView, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.config_listing import CollectionConfig, ExampleConfig, HardwareConfig
from gateway.errors import ConfigError
from gateway.ssrf import AddressPolicy, parse_networks

DEFAULT_CATALOG = Path("config/catalog.toml")
DEFAULT_DATA_DIR = Path("data")
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_RETENTION_SECONDS = 30 * 24 * 3600
DEFAULT_AUDIT_RETENTION_SECONDS = 365 * 24 * 3600
DEFAULT_REFRESH_AFTER_SECONDS = 1.0
DEFAULT_KEY_CACHE_SECONDS = 2.0
DEFAULT_UPSTREAM_TIMEOUT_SECONDS = 30.0
DEFAULT_COG_VERSION = "0.9.4"
DEFAULT_RUN_TIMEOUT_SECONDS = 600.0
# Longer than load balancers' idle timeouts (often 60 s): a client must never see a reused connection reset,
# because JS clients then send a create again.
DEFAULT_KEEP_ALIVE_SECONDS = 75
DEFAULT_FILE_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_FILE_EXPIRY_SECONDS = 24 * 3600
DEFAULT_FILE_SWEEP_SECONDS = 60.0
DEFAULT_FILE_PAGE_SIZE = 100
MIN_ADMIN_TOKEN_LENGTH = 16
DEFAULT_OUTPUT_LINK_SECONDS = 24 * 3600
DEFAULT_LIST_PAGE_BYTES = 8 * 1024 * 1024  # documents per list page, however many predictions that is
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0  # from a connection (or a request's first byte) to its last header
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0  # the longest pause between two parts of a request body
# Client webhooks: Replicate retries the terminal one with exponential backoff for about a minute.
DEFAULT_WEBHOOK_TIMEOUT_SECONDS = 10.0
DEFAULT_WEBHOOK_RETRY_SECONDS = 60.0
DEFAULT_WEBHOOK_FIRST_RETRY_SECONDS = 1.0
DEFAULT_WEBHOOK_LEASE_SECONDS = 10.0
DEFAULT_WEBHOOK_CONCURRENCY = 64
DEFAULT_SHUTDOWN_SECONDS = 25.0
DEFAULT_USAGE_ROW_RETENTION_SECONDS = 90 * 24 * 3600  # per-prediction usage rows, for audit
DEFAULT_USAGE_RETENTION_SECONDS = 400 * 24 * 3600  # hourly aggregates: a year and a month to compare with

_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _owner_name(value: str) -> str:
    if not _MODEL_NAME.match(value):
        raise ValueError(f"{value!r} is not an owner/name")
    return value


OwnerName = Annotated[str, AfterValidator(_owner_name)]


class Settings(BaseSettings):
    """Process settings, read once by the CLI and handed to `create_app`."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("GATEWAY_REDIS_URL", "REDIS_URL"))
    data_dir: Path = DEFAULT_DATA_DIR
    catalog: Path = DEFAULT_CATALOG
    host: str = "127.0.0.1"
    port: int = 8000
    admin_token: SecretStr | None = None
    public_base_url: str | None = None
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    prediction_retention_seconds: int = Field(default=DEFAULT_RETENTION_SECONDS, gt=0)
    audit_retention_seconds: int = Field(default=DEFAULT_AUDIT_RETENTION_SECONDS, gt=0)
    refresh_after_seconds: float = Field(default=DEFAULT_REFRESH_AFTER_SECONDS, ge=0)
    key_cache_seconds: float = Field(default=DEFAULT_KEY_CACHE_SECONDS, ge=0, le=5)
    allow_private_input_urls: bool = False  # true: URLs may reach any address (as allowing every network)
    allowed_private_cidrs: str = ""  # comma-separated networks tenant and upstream URLs may reach, e.g. 10.0.0.0/8
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, with the request's fields
    keep_alive_seconds: int = Field(default=DEFAULT_KEEP_ALIVE_SECONDS, gt=0)
    model_servers: int | None = Field(default=None, ge=1, le=64, description="servers per managed Cog provider")
    workers: int = Field(default=1, ge=1, le=64, description="serving processes sharing the port")
    # SIGTERM: how long the whole drain may take (below Kubernetes' 30 s grace), and how much of it the process
    # keeps accepting new connections while readiness fails, so a load balancer takes it out of rotation first.
    shutdown_seconds: float = Field(default=DEFAULT_SHUTDOWN_SECONDS, gt=0)
    shutdown_accept_seconds: float = Field(default=0.0, ge=0)
    files_dir: Path | None = None  # None: <data_dir>/files
    file_max_bytes: int = Field(default=DEFAULT_FILE_MAX_BYTES, gt=0)
    file_expiry_seconds: int = Field(default=DEFAULT_FILE_EXPIRY_SECONDS, gt=0)
    file_sweep_seconds: float = Field(default=DEFAULT_FILE_SWEEP_SECONDS, gt=0)
    file_page_size: int = Field(default=DEFAULT_FILE_PAGE_SIZE, gt=0, le=1000)
    # Where file blobs live: `local` (`files_directory()`, one per process) or `s3://<bucket>[/<prefix>]`, shared by
    # every process; the object store's address (MinIO etc.) and the standard AWS credentials and region.
    file_storage: str = "local"
    s3_endpoint_url: str | None = None
    aws_access_key_id: SecretStr | None = Field(default=None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY"))
    aws_session_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("AWS_SESSION_TOKEN"))
    aws_region: str | None = Field(default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    output_link_seconds: int = Field(default=DEFAULT_OUTPUT_LINK_SECONDS, gt=0)
    list_page_bytes: int = Field(default=DEFAULT_LIST_PAGE_BYTES, gt=0)
    header_timeout_seconds: float = Field(default=DEFAULT_HEADER_TIMEOUT_SECONDS, gt=0)
    body_timeout_seconds: float = Field(default=DEFAULT_BODY_TIMEOUT_SECONDS, gt=0)
    # Follow-ups of unfinished predictions (polling upstreams that sent no news): the first one this long after
    # creation, then every `poll_ratio` times the prediction's age, at most every `poll_longest_seconds`.
    poll_first_seconds: float = Field(default=1.0, gt=0)
    poll_ratio: float = Field(default=0.5, gt=0)
    poll_longest_seconds: float = Field(default=30.0, gt=0)
    # How long a process holds a follow-up it took: one that dies holding it leaves it to others this much later.
    follow_up_lease_seconds: float = Field(default=60.0, gt=0)
    # Client webhooks. Their addresses follow the input URL policy, except for the networks allowed here
    # (e.g. 127.0.0.0/8 for a receiver on this machine); metadata addresses are never allowed.
    webhook_allowed_networks: str = ""
    webhook_timeout_seconds: float = Field(default=DEFAULT_WEBHOOK_TIMEOUT_SECONDS, gt=0)  # one attempt
    webhook_retry_seconds: float = Field(default=DEFAULT_WEBHOOK_RETRY_SECONDS, ge=0)  # last retry, after enqueue
    webhook_first_retry_seconds: float = Field(default=DEFAULT_WEBHOOK_FIRST_RETRY_SECONDS, gt=0)  # then doubling
    webhook_lease_seconds: float = Field(default=DEFAULT_WEBHOOK_LEASE_SECONDS, gt=0)  # a dead process's are taken over
    webhook_concurrency: int = Field(default=DEFAULT_WEBHOOK_CONCURRENCY, gt=0)  # deliveries in flight per process
    # Usage metering: the currency of the catalog's prices (a label only: amounts are never converted), how long
    # per-prediction rows and hourly aggregates are kept, and whether the usage metrics carry a `key_id` label
    # (`key`) or only `tenant` (`tenant`: for operators with very many keys).
    currency: str = Field(default="USD", min_length=1, max_length=16)
    usage_row_retention_seconds: int = Field(default=DEFAULT_USAGE_ROW_RETENTION_SECONDS, gt=0)
    usage_retention_seconds: int = Field(default=DEFAULT_USAGE_RETENTION_SECONDS, gt=0)
    usage_metrics_by: Literal["key", "tenant"] = "key"
    # Circuit breakers of upstream routes: `breaker_failures` failures within the window open a route's breaker
    # for `breaker_open_seconds`; then one probe request may hold the route for up to `breaker_probe_seconds`.
    breaker_failures: int = Field(default=5, gt=0)
    breaker_window_seconds: float = Field(default=30.0, gt=0)
    breaker_open_seconds: float = Field(default=30.0, gt=0)
    breaker_probe_seconds: float = Field(default=60.0, gt=0)

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty token (an unset variable in a compose file) would let an empty bearer in: refuse to start.
        if value is not None and len(value.get_secret_value().strip()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(
                f"GATEWAY_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} characters; "
                "leave it unset to have one generated into the data directory"
            )
        return value

    @model_validator(mode="after")
    def _accepting_within_shutdown(self) -> Settings:
        if self.shutdown_accept_seconds >= self.shutdown_seconds:
            raise ValueError("GATEWAY_SHUTDOWN_ACCEPT_SECONDS must be less than GATEWAY_SHUTDOWN_SECONDS")
        return self

    @field_validator("allowed_private_cidrs", "webhook_allowed_networks")
    @classmethod
    def _cidrs(cls, value: str, info: ValidationInfo) -> str:
        try:
            parse_networks(value, f"GATEWAY_{str(info.field_name).upper()}")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("file_storage")
    @classmethod
    def _file_storage(cls, value: str) -> str:
        if value != "local":
            _bucket_and_prefix(value)
        return value

    def object_store(self) -> tuple[str, str] | None:
        """The bucket and key prefix of `s3://` file storage; None for local storage."""
        return None if self.file_storage == "local" else _bucket_and_prefix(self.file_storage)

    def address_policy(self) -> AddressPolicy:
        """Which addresses URLs from tenants and upstream outputs may reach."""
        return AddressPolicy.from_setting(self.allowed_private_cidrs, allow_all=self.allow_private_input_urls)

    def webhook_address_policy(self) -> AddressPolicy:
        """Which addresses client webhooks may reach."""
        return AddressPolicy(parse_networks(self.webhook_allowed_networks))

    def local_base_url(self) -> str:
        """How processes on this machine (managed model servers) reach the gateway."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def files_directory(self) -> Path:
        """Where uploaded and output files are kept: `files_dir`, or `files` under the data directory."""
        return self.files_dir or self.data_dir / "files"


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    """ValueError naming the problem unless `url` is `s3://<bucket>[/<prefix>]` with a valid bucket name."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is neither 'local' nor s3://<bucket>[/<prefix>]")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError(f"{bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)")
    return bucket, prefix.strip("/")


# --- catalog file ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManagedServers(_Strict):
    """Cog model servers the gateway runs itself as child processes, on consecutive ports."""

    model_dir: Path
    count: int = Field(default=1, ge=1, le=64)
    base_port: int = Field(default=5100, ge=1024, le=65000)
    host: str = "127.0.0.1"
    env: dict[str, str] = {}  # extra environment for the servers (model settings, never the gateway's secrets)

    def urls(self) -> list[str]:
        return [f"http://{self.host}:{self.base_port + i}" for i in range(self.count)]


class ProviderConfig(_Strict):
    """An upstream. `replicate` needs `base_url`; `cog` needs `servers` (URLs) and/or `managed` servers."""

    kind: Literal["replicate", "cog"]
    base_url: str | None = None
    servers: list[str] = []
    managed: ManagedServers | None = None
    token_env: list[str] = []
    webhook_token_env: str | None = None
    timeout: float = Field(default=DEFAULT_UPSTREAM_TIMEOUT_SECONDS, gt=0)
    run_timeout: float = Field(default=DEFAULT_RUN_TIMEOUT_SECONDS, gt=0, description="cog: longest a prediction may run")
    max_connections: int = Field(default=100, gt=0)
    tokens: tuple[SecretStr, ...] = Field(default=(), exclude=True)
    token_names: tuple[str, ...] = Field(default=(), exclude=True)  # the variable each of `tokens` came from
    webhook_token: SecretStr | None = Field(default=None, exclude=True)
    hardware: list[HardwareConfig] = []  # what `GET /v1/hardware` lists for it (a cog provider: CPU if none)
    # replicate: the operator's upstream account that tenants' trainings create versions in (see `trainings`)
    training_destination_owner: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)

    @field_validator("servers")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        return [_check_http_url(url) for url in value]

    @field_validator("token_env")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_env_name(name)
        return value

    @field_validator("webhook_token_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return None if value is None else _check_env_name(value)

    @model_validator(mode="after")
    def _targets(self) -> ProviderConfig:
        if self.kind == "replicate" and self.base_url is None:
            raise ValueError("a replicate provider needs base_url")
        if self.kind == "cog" and not (self.servers or self.managed):
            raise ValueError("a cog provider needs servers or managed")
        if self.kind != "replicate" and self.training_destination_owner is not None:
            raise ValueError("only a replicate provider runs trainings (training_destination_owner)")
        return self

    def server_urls(self) -> list[str]:
        """Every Cog server of this provider: the listed ones, then the managed ones."""
        return [*self.servers, *(self.managed.urls() if self.managed else [])]


def _check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _check_env_name(name: str) -> str:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        raise ValueError(f"{name!r} is not an environment variable name (put the secret in the environment)")
    return name


class RouteConfig(_Strict):
    """Where a public version runs: a provider plus one upstream target (none for a Cog provider's own model).

    Routes are tried by `priority`, lowest first (by default their position in the list); routes of equal
    priority share the traffic by `weight`, as DNS SRV records do."""

    provider: str
    version: str | None = None
    model: OwnerName | None = None
    deployment: OwnerName | None = None
    priority: int | None = Field(default=None, ge=0)
    weight: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> RouteConfig:
        targets = [t for t in (self.version, self.model, self.deployment) if t is not None]
        if len(targets) > 1:
            raise ValueError("a route needs exactly one of version, model or deployment")
        return self

    @property
    def has_target(self) -> bool:
        return any(t is not None for t in (self.version, self.model, self.deployment))


class VersionConfig(_Strict):
    id: str
    created_at: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    cog_version: str = DEFAULT_COG_VERSION
    schema_file: str | None = Field(default=None, alias="schema")
    openapi_schema: dict[str, Any] | None = Field(default=None, exclude=True)
    routes: list[RouteConfig] = Field(min_length=1)
    # Whether predictions of this version get a stream URL; unset: when the schema's output is an iterator.
    stream: bool | None = None
    trainable: bool = False  # tenants may train it: it needs a version route to a provider that runs trainings

    @field_validator("id")
    @classmethod
    def _hex_id(cls, value: str) -> str:
        if not _VERSION_ID.match(value):
            raise ValueError("must be 64 lowercase hex characters")
        return value


class PriceConfig(_Strict):
    """What one prediction costs the tenant, in the settings' currency: any combination of the three parts.
    `per_prediction` and `per_output` are charged for succeeded predictions; `per_second` for the run time of any
    prediction that ran (failed and canceled runs used the hardware too). A create pre-charges an estimate: the
    per-prediction price, `per_output` for the outputs it asks for, and `estimate_seconds` of run time."""

    per_prediction: Decimal = Field(default=Decimal(0), ge=0)
    per_second: Decimal = Field(default=Decimal(0), ge=0)
    per_output: Decimal = Field(default=Decimal(0), ge=0)
    estimate_seconds: Decimal = Field(default=Decimal(0), ge=0)


class ModelConfig(_Strict):
    name: OwnerName
    description: str | None = None
    visibility: Literal["public", "private"] = "public"
    aliases: dict[str, str] = {}
    defaults: dict[str, Any] = {}
    price: PriceConfig = PriceConfig()
    versions: list[VersionConfig] = Field(min_length=1, description="newest first")
    tags: list[str] = []  # for search
    readme: str | None = None  # markdown; or `readme_file`, a path relative to the catalog file
    readme_file: str | None = Field(default=None, exclude=True)
    examples: list[ExampleConfig] = []

    @model_validator(mode="after")
    def _one_readme(self) -> ModelConfig:
        if self.readme is not None and self.readme_file is not None:
            raise ValueError("a model needs at most one of readme and readme_file")
        return self


class DeploymentConfig(_Strict):
    name: OwnerName
    model: OwnerName
    version: str | None = None
    routes: list[RouteConfig] = []


class ImagesConfig(_Strict):
    """The catalog models that serve the OpenAI-style images API (`[openai.images]`); unset: not offered."""

    generations: OwnerName | None = None
    edits: OwnerName | None = None


class OpenAIConfig(_Strict):
    images: ImagesConfig = ImagesConfig()


class CatalogConfig(_Strict):
    providers: dict[str, ProviderConfig]
    models: list[ModelConfig] = []
    deployments: list[DeploymentConfig] = []
    collections: list[CollectionConfig] = []
    openai: OpenAIConfig = OpenAIConfig()

    @model_validator(mode="after")
    def _references(self) -> CatalogConfig:
        _check_references(self)
        return self


def load_catalog(path: Path, environ: Mapping[str, str] | None = None) -> CatalogConfig:
    """Parse and check the catalog file; every problem raises ConfigError naming file, field and problem."""
    environ = os.environ if environ is None else environ
    raw = _read_toml(path)
    try:
        catalog = CatalogConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe_validation(path, exc)) from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return _with_secrets_and_schemas(catalog, path, environ)


def with_model_servers(catalog: CatalogConfig, count: int | None) -> CatalogConfig:
    """The catalog with every managed Cog provider running `count` servers (None: as configured)."""
    if count is None:
        return catalog
    providers = {
        name: p.model_copy(update={"managed": p.managed.model_copy(update={"count": count})}) if p.managed else p
        for name, p in catalog.providers.items()
    }
    return catalog.model_copy(update={"providers": providers})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: catalog file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _check_references(catalog: CatalogConfig) -> None:
    models = {m.name: m for m in catalog.models}
    if len(models) != len(catalog.models):
        raise ValueError("models: a model name is declared twice")
    for i, model in enumerate(catalog.models):
        for j, version in enumerate(model.versions):
            _check_routes(catalog, version.routes, f"models[{i}].versions[{j}].routes")
            if version.trainable and not any(_trains(catalog, route) for route in version.routes):
                where = f"models[{i}].versions[{j}].trainable"
                raise ValueError(f"{where}: no version route to a provider with training_destination_owner")
    for i, deployment in enumerate(catalog.deployments):
        target = models.get(deployment.model)
        if target is None:
            raise ValueError(f"deployments[{i}].model: unknown model {deployment.model!r}")
        if deployment.version and deployment.version not in {v.id for v in target.versions}:
            raise ValueError(f"deployments[{i}].version: {deployment.model} has no version {deployment.version}")
        _check_routes(catalog, deployment.routes, f"deployments[{i}].routes")
    for operation in ("generations", "edits"):
        name = getattr(catalog.openai.images, operation)
        if name is not None and name not in models:
            raise ValueError(f"openai.images.{operation}: unknown model {name!r}")
    _check_collections(catalog.collections, models.keys())


def _trains(catalog: CatalogConfig, route: RouteConfig) -> bool:
    """Whether a tenant's training can run on the route: an upstream version on a provider that runs trainings."""
    provider = catalog.providers.get(route.provider)
    return route.version is not None and provider is not None and provider.training_destination_owner is not None


def _check_collections(collections: list[CollectionConfig], models: KeysView[str]) -> None:
    if len({c.slug for c in collections}) != len(collections):
        raise ValueError("collections: a slug is declared twice")
    for i, collection in enumerate(collections):
        for j, name in enumerate(collection.models):
            if name not in models:
                raise ValueError(f"collections[{i}].models[{j}]: unknown model {name!r}")


def _check_routes(catalog: CatalogConfig, routes: list[RouteConfig], where: str) -> None:
    for k, route in enumerate(routes):
        provider = catalog.providers.get(route.provider)
        if provider is None:
            raise ValueError(f"{where}[{k}].provider: unknown provider {route.provider!r}")
        if provider.kind == "replicate" and not route.has_target:
            raise ValueError(f"{where}[{k}]: a route needs exactly one of version, model or deployment")


def _with_secrets_and_schemas(catalog: CatalogConfig, path: Path, environ: Mapping[str, str]) -> CatalogConfig:
    providers = {name: _with_secrets(p, path, environ) for name, p in catalog.providers.items()}
    models = []
    for i, model in enumerate(catalog.models):
        versions = []
        for j, version in enumerate(model.versions):
            schema = None
            if version.schema_file is not None:
                schema = _read_schema(path.parent / version.schema_file, f"{path}: models[{i}].versions[{j}].schema")
            versions.append(version.model_copy(update={"openapi_schema": schema}))
        readme = model.readme if model.readme_file is None else _read_readme(path, model.readme_file, i)
        models.append(model.model_copy(update={"versions": versions, "readme": readme}))
    return catalog.model_copy(update={"providers": providers, "models": models})


def _with_secrets(provider: ProviderConfig, path: Path, environ: Mapping[str, str]) -> ProviderConfig:
    token_names = tuple(e for e in provider.token_env if environ.get(e))
    tokens = tuple(SecretStr(environ[e]) for e in token_names)
    webhook_token = environ.get(provider.webhook_token_env or "")
    managed = provider.managed
    if managed is not None and not managed.model_dir.is_absolute():
        managed = managed.model_copy(update={"model_dir": (path.parent / managed.model_dir).resolve()})
    secrets = {"tokens": tokens, "token_names": token_names, "webhook_token": SecretStr(webhook_token) if webhook_token else None}
    return provider.model_copy(update={**secrets, "managed": managed})


def _read_readme(path: Path, readme_file: str, index: int) -> str:
    try:
        return (path.parent / readme_file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: models[{index}].readme_file: cannot read {readme_file}: {exc}") from None


def _read_schema(schema_path: Path, where: str) -> dict[str, Any]:
    try:
        schema = json.loads(schema_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}: schema file {schema_path} not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: {schema_path} is not valid JSON: {exc}") from None
    if not isinstance(schema, dict) or not isinstance(schema.get("components", {}).get("schemas", {}).get("Input"), dict):
        raise ConfigError(f"{where}: {schema_path} has no components.schemas.Input (an OpenAPI document is expected)")
    return schema


def _describe_validation(path: Path, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{path}: {field or '(top level)'}: {message}")
    return "\n".join(problems)
