"""What a Redis URL names: one server, a Redis/Valkey Cluster, or a primary that Sentinels manage.

- `redis://`, `rediss://`, `unix://`: one server, as redis-py reads it.
- `redis+cluster://[user:password@]host:port[,host:port...]` (`rediss+cluster://` for TLS): any reachable
  nodes of a cluster; the client discovers the rest and follows slot moves and failovers.
- `redis+sentinel://[user:password@]host:port[,host:port...]/<service>[?sentinel_username=…&sentinel_password=…]`
  (`rediss+sentinel://` for TLS to the data nodes): the sentinels to ask for the primary of `<service>`; the
  credentials are the data nodes', the query's those of the sentinels themselves when they require any.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from gateway.errors import ConfigError

_SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password"})


class Kind(enum.Enum):
    SERVER = "server"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


@dataclass(frozen=True)
class Target:
    """A parsed Redis URL. `hosts` and the rest are empty for a single server, which redis-py parses itself."""

    kind: Kind
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = None
    tls: bool = False
    service: str = ""
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def parse(url: str) -> Target:
    """The topology `url` names; ConfigError (never quoting the URL, which may hold a password) if malformed."""
    scheme, _, _ = url.partition("://")
    base, _, kind = scheme.partition("+")
    if not kind:
        return Target(Kind.SERVER, url)
    if base not in ("redis", "rediss") or kind not in ("cluster", "sentinel"):
        raise ConfigError(f"Redis URL: unknown scheme {scheme!r} (redis, rediss, unix, redis+cluster, redis+sentinel)")
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    target = Target(
        Kind(kind),
        url,
        hosts=tuple(_host(entry) for entry in netloc.split(",")),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=base == "rediss",
    )
    return _with_sentinel(target, parts.path, parts.query) if target.kind is Kind.SENTINEL else target


def _with_sentinel(target: Target, path: str, query: str) -> Target:
    service = path.strip("/")
    if not service or "/" in service:
        raise ConfigError("Redis URL: a sentinel URL ends in /<service name>")
    options = {name: values[-1] for name, values in parse_qs(query).items()}
    unknown = sorted(set(options) - _SENTINEL_OPTIONS)
    if unknown:
        raise ConfigError(f"Redis URL: unknown sentinel options {unknown}")
    return Target(
        target.kind,
        target.url,
        target.hosts,
        target.username,
        target.password,
        target.tls,
        service,
        options.get("sentinel_username"),
        options.get("sentinel_password"),
    )


def _host(entry: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("Redis URL: each node is host:port")
    return host.strip("[]"), int(port)
