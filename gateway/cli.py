"""Command line: `gateway serve`, `gateway keys …`, `gateway audit`, `gateway usage` and `gateway limits …`.
A thin shell over the services."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from gateway import cli_usage, logs
from gateway.api.app import create_app
from gateway.api.urls import Links
from gateway.audit import MAX_PAGE_SIZE, Actor, AuditLog, AuditQuery, Subject
from gateway.catalog import Catalog
from gateway.config import Settings, load_catalog, with_model_servers
from gateway.errors import BadRequest, ConfigError, GatewayError, StoreError
from gateway.keys import KeyRecord, KeyService, KeySpec, NewKeySpec, Token
from gateway.serving import gateway_server
from gateway.signing import SECRET_NAME, Signer
from gateway.store import Store
from gateway.store.embedded import EmbeddedRedis, running_url
from gateway.timestamps import parse_timestamp
from gateway.welcome import DEMO_TENANT, demo_token, snippet
from gateway.workers import supervise


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        args.run(settings, args)
    except (ConfigError, ValidationError) as exc:
        sys.exit(f"gateway: configuration error:\n{exc}")
    except StoreError as exc:
        where = _without_credentials(settings.redis_url) if settings.redis_url else "the embedded server"
        sys.exit(f"gateway: {exc.detail}: is Redis running at {where}? (GATEWAY_REDIS_URL)")
    except GatewayError as exc:
        sys.exit(f"gateway: {exc.detail}")


def _without_credentials(url: str) -> str:
    """`url` without its user name and password; every node of a cluster or sentinel URL stays."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def serve(settings: Settings, args: argparse.Namespace | None = None) -> None:
    """Run the gateway until interrupted, with an embedded Redis when no URL is configured."""
    logs.configure(settings.log_level, settings.log_format)
    say = logs.announcer(settings.log_format)
    catalog_config = with_model_servers(load_catalog(settings.catalog), settings.model_servers)
    catalog = Catalog(catalog_config)
    _private_directory(settings.data_dir, say)
    settings = _with_admin_token(settings, say)
    with _stop_signals(say), _redis(settings, say) as settings:
        _welcome(settings, catalog, say)
        if settings.workers > 1:
            supervise(settings, catalog_config)
        else:
            gateway_server(create_app(settings, catalog), settings).run()


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stopped(BaseException):
    """SIGINT or SIGTERM arrived: unwinds `serve` like KeyboardInterrupt, so every `with` stops what it started."""


@contextlib.contextmanager
def _stop_signals(say: logs.Announce) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into a clean stop, whenever they arrive.

    While uvicorn (or the supervisor of several workers) runs it takes the signals over, shuts the app down
    (stopping the model servers) and then raises the signal again, which lands here: without this, SIGTERM's
    default action would end the process
    before the embedded Redis is stopped. Further signals are ignored while the clean-up runs, so each child is
    stopped once.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise _Stopped

    previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS}
    try:
        yield
    except _Stopped:
        say("gateway: stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _welcome(settings: Settings, catalog: Catalog, say: logs.Announce) -> None:
    token_path = settings.data_dir / "demo_key"

    async def keep_token() -> None:
        async with _store(settings) as store:
            await demo_token(KeyService(store.keys), token_path, Actor.cli())

    asyncio.run(keep_token())
    base_url = settings.public_base_url or settings.local_base_url()
    say(
        f"gateway: starting on {base_url} (Replicate API at /v1 and /replicate/v1, admin API at /admin/v1)\n"
        f"gateway: a key for the '{DEMO_TENANT}' tenant is in {token_path}; try it with "
        f"`pip install replicate==1.0.7` and this Python:\n\n{snippet(base_url, catalog, token_path)}\n"
    )


def _settings(args: argparse.Namespace) -> Settings:
    names = ("host", "port", "catalog", "redis_url", "data_dir", "model_servers", "workers")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name, None)}
    return Settings(**overrides)


@contextlib.asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[Store]:
    store = Store.connect(
        str(settings.redis_url),
        prediction_retention_seconds=settings.prediction_retention_seconds,
        audit_retention_seconds=settings.audit_retention_seconds,
    )
    try:
        yield store
    finally:
        await store.aclose()


@contextlib.contextmanager
def _redis(settings: Settings, say: logs.Announce = logs.PRINT, *, reuse_running: bool = False) -> Iterator[Settings]:
    """Settings with a usable Redis URL: the configured one, a running embedded server's, or a new embedded one."""
    if settings.redis_url:
        yield settings
        return
    redis_dir = settings.data_dir / "redis"
    url = running_url(redis_dir) if reuse_running else None
    if url:
        yield settings.model_copy(update={"redis_url": url})
        return
    with EmbeddedRedis(redis_dir) as server:
        say(f"gateway: started the embedded Redis server (data in {redis_dir})")
        yield settings.model_copy(update={"redis_url": server.url})


def _private_directory(path: Path, say: logs.Announce) -> None:
    """The data directory holds the admin token, the demo key and the embedded Redis's password and data: made
    owner-only; one that exists is not changed (it may be chosen by the operator), only warned about."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        say(f"gateway: warning: the data directory {path} is open to other users; `chmod 700 {path}`")


def _with_admin_token(settings: Settings, say: logs.Announce) -> Settings:
    """Without GATEWAY_ADMIN_TOKEN, use (or create) one kept in the data directory, readable by its owner only."""
    if settings.admin_token is not None:
        return settings
    path = settings.data_dir / "admin_token"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
        # The token itself only to a person at a terminal, once: never into a log collector.
        shown = f": {path.read_text()}" if sys.stdout.isatty() else ""
        say(f"gateway: created an admin token in {path}{shown}")
    return settings.model_copy(update={"admin_token": SecretStr(path.read_text().strip())})


# --- keys --------------------------------------------------------------------------------------


def _run_keys(
    operation: Callable[[KeyService, argparse.Namespace], Awaitable[Any]],
) -> Callable[[Settings, argparse.Namespace], None]:
    def run(settings: Settings, args: argparse.Namespace) -> None:
        _print_from_store(settings, lambda store: operation(KeyService(store.keys), args))

    return run


def _print_from_store(settings: Settings, operation: Callable[[Store], Awaitable[Any]]) -> None:
    """Run `operation` over the configured (or running embedded) Redis and print its result as JSON."""
    print(json.dumps(_on_store(settings, operation), indent=2))


def _on_store(settings: Settings, operation: Callable[[Store], Awaitable[Any]]) -> Any:
    """Run `operation` over the configured (or running embedded) Redis and return its result."""

    async def call(resolved: Settings) -> Any:
        async with _store(resolved) as store:
            return await operation(store)

    with _redis(settings, reuse_running=True) as resolved:
        return asyncio.run(call(resolved))


def _shown(result: KeyRecord | tuple[KeyRecord, Token]) -> dict[str, Any]:
    if isinstance(result, tuple):
        return {"key": result[0].public(), "token": str(result[1])}
    return result.public()


def _spec_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields = {"tenant": args.tenant, "name": args.name, "expires_at": args.expires_at}
    if args.models:
        fields["models"] = args.models.split(",")
    if args.scopes:
        fields["scopes"] = args.scopes.split(",")
    return {k: v for k, v in fields.items() if v is not None}


async def _create(service: KeyService, args: argparse.Namespace) -> Any:
    return _shown(await service.create(NewKeySpec(**_spec_fields(args)), actor=Actor.cli()))


async def _list(service: KeyService, args: argparse.Namespace) -> Any:
    return [r.public() for r in await service.list(args.tenant)]


async def _show(service: KeyService, args: argparse.Namespace) -> Any:
    return _shown(await service.get(args.key_id))


async def _update(service: KeyService, args: argparse.Namespace) -> Any:
    return _shown(await service.update(args.key_id, KeySpec(**_spec_fields(args)), actor=Actor.cli()))


async def _disable(service: KeyService, args: argparse.Namespace) -> Any:
    return _shown(await service.disable(args.key_id, actor=Actor.cli()))


async def _rotate(service: KeyService, args: argparse.Namespace) -> Any:
    return _shown(await service.rotate(args.key_id, args.grace_seconds, actor=Actor.cli()))


async def _delete(service: KeyService, args: argparse.Namespace) -> Any:
    await service.delete(args.key_id, actor=Actor.cli())
    return {"deleted": args.key_id}


# --- audit -------------------------------------------------------------------------------------


def _print_audit(settings: Settings, args: argparse.Namespace) -> None:
    """Audit entries newest first, with the cursor of the next page (`--cursor`)."""
    query = AuditQuery(
        subject=Subject("key", args.key_id) if args.key_id else None,
        tenant=args.tenant,
        action=args.action,
        since=_instant(args.since, "--since"),
        until=_instant(args.until, "--until"),
        limit=args.limit,
        cursor=args.cursor,
    )

    async def read(store: Store) -> Any:
        page = await AuditLog(store.audit).read(query)
        return {"results": page.results, "next_cursor": page.next_cursor}

    _print_from_store(settings, read)


def _instant(value: str | None, flag: str) -> float | None:
    instant = parse_timestamp(value)
    if value and instant is None:
        raise BadRequest(f"{flag} must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z")
    return instant


def _print_upload_url(settings: Settings, args: argparse.Namespace) -> None:
    """The `--upload-url` to give a Cog server the gateway does not run itself (a `servers` entry)."""

    async def secret(resolved: Settings) -> bytes:
        async with _store(resolved) as store:
            return await store.shared_secret(SECRET_NAME)

    with _redis(settings, reuse_running=True) as resolved:
        links = Links(Signer(asyncio.run(secret(resolved))), settings.public_base_url, settings.local_base_url())
    print(links.upload(args.server_url.rstrip("/"), base=links.public_base))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Replicate-compatible aggregation gateway")
    parser.add_argument("--catalog", type=Path, help="catalog file (env GATEWAY_CATALOG)")
    parser.add_argument("--redis-url", help="Redis URL; without one an embedded server is used (env GATEWAY_REDIS_URL)")
    parser.add_argument("--data-dir", type=Path, help="data directory for the embedded Redis and tokens (env GATEWAY_DATA_DIR)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve_cmd = commands.add_parser("serve", help="run the gateway")
    serve_cmd.add_argument("--host", help="bind address (env GATEWAY_HOST, default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port (env GATEWAY_PORT, default 8000)")
    serve_cmd.add_argument(
        "--model-servers", type=int, help="Cog servers per managed provider, overriding the catalog (env GATEWAY_MODEL_SERVERS)"
    )
    serve_cmd.add_argument(
        "--workers", type=int, help="serving processes sharing the port, with one set of model servers (env GATEWAY_WORKERS)"
    )
    serve_cmd.set_defaults(run=serve)

    keys = commands.add_parser("keys", help="manage tenant API keys").add_subparsers(required=True, metavar="ACTION")
    create = keys.add_parser("create", help="create a key; its token is printed once")
    create.add_argument("--tenant", required=True)
    _key_fields(create)
    create.set_defaults(run=_run_keys(_create))
    listing = keys.add_parser("list", help="list keys")
    listing.add_argument("--tenant")
    listing.set_defaults(run=_run_keys(_list))
    update = keys.add_parser("update", help="change a key's fields")
    update.add_argument("key_id")
    update.add_argument("--tenant")
    _key_fields(update)
    update.set_defaults(run=_run_keys(_update))
    for action, operation in (("show", _show), ("disable", _disable), ("delete", _delete)):
        command = keys.add_parser(action, help=f"{action} a key")
        command.add_argument("key_id")
        command.set_defaults(run=_run_keys(operation))
    rotate = keys.add_parser("rotate", help="new secret for the same key id")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace-seconds", type=float, default=0, help="how long the old secret keeps working")
    rotate.set_defaults(run=_run_keys(_rotate))

    audit = commands.add_parser("audit", help="the audit log of admin actions, newest first")
    audit.add_argument("--key-id")
    audit.add_argument("--tenant")
    audit.add_argument("--action", help="e.g. key.create, key.update, key.rotate, key.disable, key.delete")
    audit.add_argument("--since", help="ISO 8601 time")
    audit.add_argument("--until", help="ISO 8601 time")
    audit.add_argument("--limit", type=int, default=100, choices=range(1, MAX_PAGE_SIZE + 1), metavar="N")
    audit.add_argument("--cursor", help="the next_cursor of the previous page")
    audit.set_defaults(run=_print_audit)

    cli_usage.add_commands(commands, _on_store, _instant)

    servers = commands.add_parser("servers", help="self-hosted Cog servers").add_subparsers(required=True, metavar="ACTION")
    upload = servers.add_parser("upload-url", help="the --upload-url for a Cog server listed in the catalog")
    upload.add_argument("server_url", help="the server's URL as the catalog lists it")
    upload.set_defaults(run=_print_upload_url)
    return parser


def _key_fields(command: argparse.ArgumentParser) -> None:
    command.add_argument("--name")
    command.add_argument("--models", help="comma-separated allow-list: owner/name, owner/name:version, wildcards")
    command.add_argument("--scopes", help="comma-separated: predict,read")
    command.add_argument("--expires-at", type=float, help="Unix time after which the key stops working")
