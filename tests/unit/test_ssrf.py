import asyncio
import ipaddress
from collections.abc import Sequence

import pytest

from gateway.errors import ConfigError
from gateway.ssrf import NO_HOST, REFUSED_ADDRESS, AddressPolicy, IPAddress, UrlGuard, ip_literal, url_host

PUBLIC = ipaddress.ip_address("93.184.215.14")
NAMES: dict[str, list[IPAddress]] = {
    "public.test": [PUBLIC],
    "loopback.test": [ipaddress.ip_address("127.0.0.1")],
    "mixed.test": [PUBLIC, ipaddress.ip_address("10.0.0.7")],
    "metadata.test": [ipaddress.ip_address("169.254.169.254")],
    "v6-loopback.test": [ipaddress.ip_address("::1")],
}


async def _resolve(host: str) -> Sequence[IPAddress]:
    if host not in NAMES:
        raise OSError(f"unknown host {host}")
    return NAMES[host]


STRICT = AddressPolicy()


def _refusal(url: str, policy: AddressPolicy = STRICT) -> str | None:
    return asyncio.run(UrlGuard(policy, _resolve).refusal(url))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f000001/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://0/",
        "http://0.0.0.0/",
        "http://%31%32%37.0.0.1/",
        "http://127.0.0.1./",
        "HTTP://LOCALHOST/",
        "http://localhost./",
        "http://localhost:8080/x",
        "http://anything.localhost/",
        "http://user:pass@127.0.0.1/",
        "http://public.test@127.0.0.1/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/",
        "http://100.100.100.200/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
        "http://[::1]/",
        "http://[::]/",
        "http://[::127.0.0.1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[0:0:0:0:0:ffff:169.254.169.254]/",
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::127.0.0.1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[fc00::1]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[fe80::1%25eth0]/",
        "http://[ff02::1]/",
        "http://①②⑦.0.0.1/",
        "http://loopback.test/",
        "http://LOOPBACK.TEST./x",
        "http://mixed.test/",
        "http://metadata.test/",
        "http://v6-loopback.test/",
    ],
)
def test_every_spelling_of_an_internal_address_is_refused(url: str) -> None:
    assert _refusal(url) == REFUSED_ADDRESS


@pytest.mark.parametrize(
    "url", ["http:/127.0.0.1/", "http:///x", "https://", "http://[::1/", "http://127.0.0.1\\@public.test/", "http://a b/"]
)
def test_urls_without_a_clear_host_are_refused(url: str) -> None:
    assert _refusal(url) == NO_HOST


@pytest.mark.parametrize(
    "url", ["https://public.test/x.png", "http://93.184.215.14/", "http://[2606:4700::1111]/", "https://PUBLIC.test.:443/"]
)
def test_public_addresses_and_names_are_allowed(url: str) -> None:
    assert _refusal(url) is None


def test_a_name_that_does_not_resolve_is_refused_by_name() -> None:
    assert _refusal("https://nowhere.test/x.png") == "The host nowhere.test could not be resolved"


@pytest.mark.parametrize(
    "url,allowed",
    [
        ("http://127.0.0.1:8080/", True),
        ("http://127.1/", True),
        ("http://localhost/", True),
        ("http://[::ffff:127.0.0.1]/", True),
        ("http://loopback.test/", True),
        ("http://10.9.8.7/", True),
        ("http://mixed.test/", True),
        ("http://127.0.0.2/", False),
        ("http://192.168.0.1/", False),
        ("http://[::1]/", False),
        ("http://169.254.169.254/", False),
    ],
)
def test_the_cidr_allow_list_lets_exactly_its_networks_through(url: str, allowed: bool) -> None:
    policy = AddressPolicy.from_setting("127.0.0.1/32, 10.0.0.0/8,169.254.0.0/16")
    assert (_refusal(url, policy) is None) == allowed


def test_allow_all_lets_every_address_through() -> None:
    for url in ("http://127.0.0.1/", "http://169.254.169.254/", "http://loopback.test/", "http://unknown.test/"):
        assert _refusal(url, AddressPolicy(allow_all=True)) is None
    assert _refusal("http:/127.0.0.1/", AddressPolicy(allow_all=True)) == NO_HOST


def test_a_bad_cidr_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"'10\.0\.0\.0/33'"):
        AddressPolicy.from_setting("127.0.0.1/32,10.0.0.0/33")


@pytest.mark.parametrize(
    "host,expected",
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("10.0x10.1", "10.16.0.1"),
        ("::127.0.0.1", "::7f00:1"),
        ("public.test", None),
        ("1.2.3.4.5", None),
    ],
)
def test_ip_literals_are_read_as_inet_aton_reads_them(host: str, expected: str | None) -> None:
    literal = ip_literal(host)
    assert (None if literal is None else str(literal)) == expected


@pytest.mark.parametrize(
    "url,host",
    [
        ("http://%31%32%37.0.0.1/", "127.0.0.1"),
        ("http://Example.COM./", "example.com"),
        ("http://user@[::FFFF:127.0.0.1]:80/", "::ffff:127.0.0.1"),
        ("  https://public.test/  ", "public.test"),
        ("http:/127.0.0.1/", None),
    ],
)
def test_url_hosts_are_canonical(url: str, host: str | None) -> None:
    assert url_host(url) == host


def test_many_urls_are_judged_with_one_lookup_per_host() -> None:
    asked: list[str] = []

    async def counting(host: str) -> Sequence[IPAddress]:
        asked.append(host)
        return await _resolve(host)

    urls = ["https://public.test/a", "https://PUBLIC.test/b", "http://loopback.test/", "http://127.1/", "http:/x"]
    verdicts = asyncio.run(UrlGuard(STRICT, counting).refusals(urls))
    assert verdicts == dict(zip(urls, [None, None, REFUSED_ADDRESS, REFUSED_ADDRESS, NO_HOST], strict=True))
    assert sorted(asked) == ["loopback.test", "public.test"]
