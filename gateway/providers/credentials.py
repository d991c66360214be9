"""Credential pools: a provider's tokens taken in turn, each set aside while it cools down after a 429.

Picking a credential costs no Redis round trip: every process keeps the cooling ends in memory, is told of each
new one over pub/sub, and reloads them all whenever it (re)subscribes. A 429 is written to Redis and announced
at once, so every process stops using that credential together. A token goes nowhere but into the upstream's
Authorization header: anything visible names a credential by its fingerprint (and the environment variable it
was read from, a name the catalog already shows).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from gateway.config import ProviderConfig
from gateway.errors import Delivery, StoreError, UpstreamUnavailable
from gateway.store import Cooled, CredentialCounts, CredentialStore, follow
from gateway.timestamps import timestamp

logger = logging.getLogger(__name__)
DEFAULT_COOLING_SECONDS = 10.0  # a 429 that says nothing of when to come back
LONGEST_COOLING_SECONDS = 3600.0  # an upstream asking for more is not taken at its word
RATE_LIMITED = "The upstream provider is rate limiting the gateway; retry shortly"


def fingerprint(token: str) -> str:
    """12 hex digits of the token's SHA-256: tells credentials apart and reveals nothing of the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Credential:
    token: str = field(repr=False)
    fingerprint: str
    env: str | None = None  # the environment variable the token was read from, when known

    @property
    def label(self) -> str:
        """How logs name the credential."""
        return f"{self.fingerprint} ({self.env})" if self.env else self.fingerprint


class CredentialStatus(StrEnum):
    AVAILABLE = "available"
    COOLING = "cooling"


@dataclass(frozen=True)
class CredentialState:
    """One credential as the admin API shows it; nothing in it reveals the token."""

    fingerprint: str
    env: str | None
    state: CredentialStatus
    cooling_until: float | None  # epoch seconds; None when available
    rate_limited_total: int  # 429s it met, counted by every gateway process

    def public(self) -> dict[str, Any]:
        until = None if self.cooling_until is None else timestamp(self.cooling_until)
        return {
            "fingerprint": self.fingerprint,
            "env": self.env,
            "state": self.state.value,
            "cooling_until": until,
            "rate_limited_total": self.rate_limited_total,
        }


class Shared(Protocol):
    """Where a pool records coolings for the other processes (`gateway.store.CredentialStore`)."""

    async def cool(self, provider: str, credential: str, until_ms: int) -> int: ...

    async def counts(self, providers: Sequence[str]) -> dict[str, CredentialCounts]: ...


class _ThisProcess:
    """Coolings known to this process only: for a pool built without the store (an adapter on its own)."""

    def __init__(self) -> None:
        self._limited: Counter[str] = Counter()

    async def cool(self, provider: str, credential: str, until_ms: int) -> int:
        self._limited[credential] += 1
        return until_ms

    async def counts(self, providers: Sequence[str]) -> dict[str, CredentialCounts]:
        return {provider: CredentialCounts({}, dict(self._limited)) for provider in providers}


class CredentialPool:
    """The credentials of one provider, in turn; see the module docstring."""

    def __init__(
        self,
        provider: str,
        credentials: Sequence[Credential],
        shared: Shared,
        on_rate_limited: Callable[[str, str], None] = lambda provider, credential: None,
    ) -> None:
        self.provider = provider
        self._credentials = tuple(credentials)
        self._fingerprints = frozenset(c.fingerprint for c in credentials)
        self._shared = shared
        self._on_rate_limited = on_rate_limited
        self._cooling: dict[str, float] = {}  # fingerprint -> epoch seconds its cooling ends
        self._turn = 0

    @classmethod
    def local(cls, provider: str, config: ProviderConfig) -> CredentialPool:
        """A pool whose coolings only this process knows."""
        return cls(provider, credentials_of(config), _ThisProcess())

    def __len__(self) -> int:
        return len(self._credentials)

    def __iter__(self) -> Iterator[Credential]:
        return iter(self._credentials)

    def pick(self, skip: Collection[str] = (), prefer: str | None = None) -> Credential:
        """The credential to use next: `prefer` (a fingerprint) if it is available, else the next available one
        in turn; fingerprints in `skip` are passed over. UpstreamUnavailable, with the shortest remaining
        cooling as Retry-After, when none is left."""
        now = time.time()
        usable = [c for c in self._credentials if c.fingerprint not in skip and self._cooling.get(c.fingerprint, 0) <= now]
        chosen = next((c for c in usable if c.fingerprint == prefer), None)
        if chosen is None and usable:
            chosen = usable[self._turn % len(usable)]
            self._turn += 1
        if chosen is None:
            raise self._none_left(now)
        return chosen

    def _none_left(self, now: float) -> UpstreamUnavailable:
        if not self._credentials:
            return UpstreamUnavailable(
                "The upstream provider for this model has no credentials configured", delivery=Delivery.NOT_SENT
            )
        remaining = [self._cooling.get(c.fingerprint, 0) - now for c in self._credentials]
        shortest = min((seconds for seconds in remaining if seconds > 0), default=1)
        return UpstreamUnavailable(RATE_LIMITED, retry_after=max(1, math.ceil(shortest)))

    async def rate_limited(self, credential: Credential, retry_after: float | None) -> None:
        """`credential` met a 429: it cools for `retry_after` seconds (a default when the upstream did not say),
        here at once and, through the store, in every other process."""
        seconds = DEFAULT_COOLING_SECONDS if retry_after is None else min(max(retry_after, 1), LONGEST_COOLING_SECONDS)
        until = time.time() + seconds
        self.cooled(credential.fingerprint, until)
        self._on_rate_limited(self.provider, credential.fingerprint)
        logger.warning("%s: credential %s is rate limited; cooling for %.0f s", self.provider, credential.label, seconds)
        try:
            stored_ms = await self._shared.cool(self.provider, credential.fingerprint, int(until * 1000))
            self.cooled(credential.fingerprint, stored_ms / 1000)
        except StoreError as exc:  # this process still rotates; the others meet the 429 themselves
            logger.warning("%s: credential cooling not shared (%s)", self.provider, exc.detail)

    def cooled(self, fingerprint: str, until: float) -> None:
        """A cooling learnt from anywhere (this process, an announcement, a reload); the later end wins. Other
        fingerprints (tokens another process has and this one not) are ignored."""
        if fingerprint in self._fingerprints and until > self._cooling.get(fingerprint, 0):
            self._cooling[fingerprint] = until

    def cooling(self) -> Iterator[tuple[Credential, bool]]:
        """Each credential and whether it is cooling now (from memory: for gauges)."""
        now = time.time()
        for credential in self._credentials:
            yield credential, self._cooling.get(credential.fingerprint, 0) > now

    async def states(self) -> list[CredentialState]:
        """Every credential's state, read from the store (and remembered)."""
        counts = (await self._shared.counts([self.provider]))[self.provider]
        self.load(counts)
        now = time.time()
        states = []
        for credential in self._credentials:
            until = self._cooling.get(credential.fingerprint, 0)
            status = CredentialStatus.COOLING if until > now else CredentialStatus.AVAILABLE
            cooling_until = until if status is CredentialStatus.COOLING else None
            limited = counts.rate_limited.get(credential.fingerprint, 0)
            states.append(CredentialState(credential.fingerprint, credential.env, status, cooling_until, limited))
        return states

    def load(self, counts: CredentialCounts) -> None:
        """Coolings as read from the store."""
        for name, until_ms in counts.cooling_until_ms.items():
            self.cooled(name, until_ms / 1000)


class CredentialPools:
    """Every credential pool of this process over the shared store, kept current by `watch`."""

    def __init__(self, store: CredentialStore, on_rate_limited: Callable[[str, str], None] = lambda p, c: None) -> None:
        self._store = store
        self._on_rate_limited = on_rate_limited
        self._pools: dict[str, CredentialPool] = {}
        self._reloads: set[asyncio.Task[None]] = set()

    def pool(self, provider: str, config: ProviderConfig) -> CredentialPool:
        """The pool of `provider`'s configured tokens (made once)."""
        if provider not in self._pools:
            self._pools[provider] = CredentialPool(provider, credentials_of(config), self._store, self._on_rate_limited)
        return self._pools[provider]

    def cooling(self) -> Iterator[tuple[str, str, bool]]:
        """(provider, fingerprint, cooling now) of every credential, from memory: read at scrape time."""
        for name, pool in self._pools.items():
            for credential, cooling in pool.cooling():
                yield name, credential.fingerprint, cooling

    async def watch(self) -> None:
        """Apply coolings as any process announces them, reloading all on each (re)subscription; until cancelled."""
        try:
            await follow("credential cooling", self._store.changes, self._announced, self._reload_soon)
        finally:
            for task in self._reloads:
                task.cancel()

    async def load(self) -> None:
        """Read every pool's coolings from the store."""
        counts = await self._store.counts(list(self._pools))
        for name, pool in self._pools.items():
            pool.load(counts[name])

    def _announced(self, message: str) -> None:
        cooled = Cooled.parse(message)
        if cooled is not None and cooled.provider in self._pools:
            self._pools[cooled.provider].cooled(cooled.credential, cooled.until_ms / 1000)

    def _reload_soon(self) -> None:
        task = asyncio.create_task(self._reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self) -> None:
        try:
            await self.load()
        except StoreError as exc:  # the next resubscription reloads again
            logger.warning("credential cooling not reloaded (%s)", exc.detail)


def credentials_of(config: ProviderConfig) -> list[Credential]:
    """The provider's tokens with their fingerprints and variable names; a token given twice counts once."""
    names: Sequence[str | None] = config.token_names
    if len(names) != len(config.tokens):  # tokens given without their variables (an adapter built in code)
        names = [None] * len(config.tokens)
    credentials: dict[str, Credential] = {}
    for secret, name in zip(config.tokens, names, strict=True):
        token = secret.get_secret_value()
        credentials.setdefault(token, Credential(token, fingerprint(token), name))
    return list(credentials.values())
