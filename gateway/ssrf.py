"""The one address policy for every URL the gateway, or a model server on its behalf, fetches or posts to.

A URL's host is read the way fetching libraries and `inet_aton` read it (decimal, octal, hex and short IPv4
forms, percent-encoding, trailing dots, IDNA, IPv6 with an embedded IPv4), then every name is resolved and the
URL is refused when any address it resolves to is refused. Connections the gateway makes itself decide on the
address actually connected to (see `providers.http`), so a name cannot rebind between check and connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from gateway.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolve = Callable[[str], Awaitable[Sequence[IPAddress]]]

REFUSED_ADDRESS = "URLs on private or loopback addresses are not accepted"
NO_HOST = "URLs without a valid host are not accepted"
RESOLVE_TIMEOUT_SECONDS = 5.0
MAX_CONCURRENT_LOOKUPS = 8  # per input: a body full of distinct hosts must not take every resolver thread

# Refused whatever `is_global` says; metadata services are refused even inside an allow-listed network.
_METADATA = frozenset(map(ipaddress.ip_address, ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")))
_REFUSED_NETWORKS = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT: holds cloud metadata addresses (100.100.100.200)
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_AUTHORITY = re.compile(r"^(?:[^@/\\?#\s]*@)?(?P<host>\[[0-9A-Za-z:.%]+\]|[^@/\\?#\s:\[\]]+)(?::\d*)?$")
_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class AddressRefused(OSError):
    """A host has no address the policy allows; raised by the guarded resolver and client (an OSError, as
    resolvers' failures are)."""

    def __init__(self, host: str) -> None:
        super().__init__(f"no allowed address for host {host!r}")
        self.host = host


@dataclass(frozen=True)
class AddressPolicy:
    """Which IP addresses tenant- and upstream-supplied URLs may reach.

    Refused: loopback, private, link-local, CGNAT, metadata, unspecified, multicast, reserved and anything else
    not globally routable; an IPv6 address carrying an IPv4 one (mapped, compatible, 6to4, NAT64) is judged by
    the IPv4 address. `allowed` networks are let through (but metadata addresses only with `allow_all`).
    """

    allowed: tuple[IPNetwork, ...] = ()
    allow_all: bool = False

    @classmethod
    def from_setting(cls, cidrs: str, *, allow_all: bool = False) -> AddressPolicy:
        """From `GATEWAY_ALLOWED_PRIVATE_CIDRS`-style text: comma-separated CIDRs."""
        return cls(parse_networks(cidrs), allow_all)

    def allows(self, address: IPAddress) -> bool:
        if self.allow_all:
            return True
        address = _embedded_ipv4(address) or address
        if address in _METADATA:
            return False
        if any(address in network for network in self.allowed):
            return True
        return address.is_global and not any(address in network for network in _REFUSED_NETWORKS)


def parse_networks(cidrs: str | Iterable[str], setting: str = "GATEWAY_ALLOWED_PRIVATE_CIDRS") -> tuple[IPNetwork, ...]:
    """Comma-separated (or listed) CIDRs; a ConfigError names the `setting` and the first that is not one."""
    items = cidrs.split(",") if isinstance(cidrs, str) else cidrs
    networks = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{setting}: {item!r} is not a CIDR like 10.0.0.0/8") from None
    return tuple(networks)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = address.packed
    if any(address in network for network in _NAT64) or (packed[:12] == bytes(12) and int(address) > 1):
        return ipaddress.IPv4Address(packed[12:])  # NAT64, or IPv4-compatible (::a.b.c.d)
    return None


def url_host(url: str) -> str | None:
    """The canonical host of an http(s) URL (lower case, percent-decoded, IDNA-mapped, no trailing dot, no
    brackets), or None when there is no host or the authority is one parsers could read differently."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    match = _AUTHORITY.match(parts.netloc)
    if match is None or not parts.netloc:
        return None
    host = unquote(match["host"]).strip("[]")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    host = host.lower().rstrip(".")
    return host if host and re.fullmatch(r"[a-z0-9._\-:%]+", host) else None


def ip_literal(host: str) -> IPAddress | None:
    """`host` as an IP address if any parser would read it as one: IPv6, or IPv4 in `inet_aton`'s forms
    (`127.1`, `0`, `0177.0.0.1`, `0x7f000001`, `2130706433`)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def is_local_name(host: str) -> bool:
    """Names that always mean this machine (RFC 6761), whatever a resolver says."""
    return host in _LOCAL_NAMES or host.endswith(".localhost")


async def system_resolve(host: str) -> list[IPAddress]:
    """Every address `host` resolves to, from the system resolver (in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


class UrlGuard:
    """Decides on a URL before it is handed to anyone: its host, and every address that host resolves to."""

    def __init__(self, policy: AddressPolicy, resolve: Resolve = system_resolve) -> None:
        self.policy = policy
        self._resolve = resolve

    async def refusal(self, url: str) -> str | None:
        """Why `url` may not be fetched (in words for the tenant), or None when it may."""
        return await self._host_refusal(url_host(url), asyncio.Semaphore(1))

    async def refusals(self, urls: Iterable[str]) -> dict[str, str | None]:
        """`refusal` of each URL; each distinct host is resolved once, a few at a time."""
        by_host: dict[str | None, list[str]] = {}
        for url in urls:
            by_host.setdefault(url_host(url), []).append(url)
        lookups = asyncio.Semaphore(MAX_CONCURRENT_LOOKUPS)
        verdicts = await asyncio.gather(*(self._host_refusal(host, lookups) for host in by_host))
        return {url: verdict for same_host, verdict in zip(by_host.values(), verdicts, strict=True) for url in same_host}

    async def _host_refusal(self, host: str | None, lookups: asyncio.Semaphore) -> str | None:
        if host is None:
            return NO_HOST
        if self.policy.allow_all:
            return None
        literal = _LOOPBACK if is_local_name(host) else ip_literal(host)
        if literal is not None:
            return None if self.policy.allows(literal) else REFUSED_ADDRESS
        try:
            async with lookups:
                addresses = await asyncio.wait_for(self._resolve(host), RESOLVE_TIMEOUT_SECONDS)
        except (OSError, TimeoutError, UnicodeError, ValueError):
            addresses = []
        if not addresses:
            return f"The host {host} could not be resolved"
        return None if all(self.policy.allows(a) for a in addresses) else REFUSED_ADDRESS
