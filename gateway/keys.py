"""Tenant API keys: the token format, hashing, key records and the admin operations on them.

A token reads `gwk_<key id>_<secret>`: the key id (12 base32 characters) is visible and stable across
rotations; the secret (40 base62 characters) is shown once and stored only as its SHA-256 digest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.audit import Actor, AuditEvent, Subject
from gateway.errors import GatewayError, NotFound
from gateway.store import AuditFields, KeyStore, StoredKey

TOKEN_PREFIX = "gwk"
Scope = Literal["predict", "read"]
ALL_SCOPES: tuple[Scope, ...] = ("predict", "read")
_TOKEN = re.compile(rf"^{TOKEN_PREFIX}_(?P<key_id>[a-z2-7]{{12}})_(?P<secret>[A-Za-z0-9]{{40}})$")
_TENANT = r"^[A-Za-z0-9_.@-]+$"
_BASE62 = string.ascii_letters + string.digits
_PATTERN = re.compile(r"^(\*|[A-Za-z0-9_.*-]+/[A-Za-z0-9_.*-]+(:[0-9a-f*]+)?)$")


@dataclass(frozen=True)
class Token:
    key_id: str
    secret: str

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}_{self.key_id}_{self.secret}"


def new_token(key_id: str | None = None) -> Token:
    key_id = key_id or "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(12))
    return Token(key_id, "".join(secrets.choice(_BASE62) for _ in range(40)))


def parse_token(text: str) -> Token | None:
    match = _TOKEN.match(text)
    return Token(match["key_id"], match["secret"]) if match else None


def hash_secret(secret: str) -> str:
    # The secret carries ~238 bits of entropy, so a fast digest is safe; no per-key salt is needed.
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyRecord(BaseModel):
    """A key as stored; `public()` is what the admin API shows (never the hashes)."""

    model_config = ConfigDict(extra="ignore")

    key_id: str
    tenant: str
    name: str = ""
    created_at: float
    expires_at: float | None = None
    disabled: bool = False
    scopes: list[Scope] = list(ALL_SCOPES)
    models: list[str] = ["*"]
    secret_hash: str
    secret_hint: str
    previous_secret_hash: str | None = None
    previous_valid_until: float | None = None

    def matches(self, secret: str, now: float) -> bool:
        digest = hash_secret(secret)
        if hmac.compare_digest(digest, self.secret_hash):
            return True
        grace = self.previous_secret_hash is not None and (self.previous_valid_until or 0) > now
        return grace and hmac.compare_digest(digest, self.previous_secret_hash or "")

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def allows(self, model: str, version: str) -> bool:
        """Whether the allow-list admits `owner/name` at `version` (patterns may pin a version or use `*`)."""
        for pattern in self.models:
            subject = f"{model}:{version}" if ":" in pattern else model
            if fnmatch.fnmatchcase(subject, pattern):
                return True
        return False

    def public(self) -> dict[str, Any]:
        return {**self.redacted(), "token_hint": f"{TOKEN_PREFIX}_{self.key_id}_…{self.secret_hint}"}

    def redacted(self) -> dict[str, Any]:
        """The record without any secret material, not even the hint: what the audit log keeps."""
        return self.model_dump(exclude={"secret_hash", "previous_secret_hash", "secret_hint"})


class KeySpec(BaseModel):
    """Fields an admin may set on create or update."""

    model_config = ConfigDict(extra="forbid")

    tenant: str | None = Field(default=None, min_length=1, max_length=128, pattern=_TENANT)
    name: str | None = Field(default=None, max_length=256)
    expires_at: float | None = None
    disabled: bool | None = None
    scopes: list[Scope] | None = None
    models: list[str] | None = None

    @field_validator("tenant", "name", "disabled", "scopes", "models", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # None only ever means "not given": a key always has these (expires_at alone may be null: never).
        if value is None:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value

    @field_validator("models")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or []:
            if not _PATTERN.match(pattern):
                raise ValueError(f"{pattern!r} is not owner/name, owner/name:version or a wildcard pattern")
        return value


class NewKeySpec(KeySpec):
    """Create needs a tenant; everything else has a default."""

    tenant: str = Field(min_length=1, max_length=128, pattern=_TENANT)


Change = Callable[[KeyRecord | None], KeyRecord | None]


class KeyService:
    """Admin operations. Each write is recorded in the audit log (action `key.<operation>`, before and after
    without secrets) in the same transaction as the change, and tells all gateway processes to drop cached copies."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    async def create(self, spec: NewKeySpec, *, actor: Actor) -> tuple[KeyRecord, Token]:
        token = new_token()
        record = KeyRecord(
            key_id=token.key_id,
            created_at=time.time(),
            secret_hash=hash_secret(token.secret),
            secret_hint=token.secret[-4:],
            **spec.model_dump(exclude_none=True),
        )

        def create(current: KeyRecord | None) -> KeyRecord:
            if current is not None:  # 60 random bits: a collision is only ever a bug
                raise GatewayError(f"Key id {token.key_id} is already taken; try again")
            return record

        await self._write(token.key_id, "create", actor, create)
        return record, token

    async def get(self, key_id: str) -> KeyRecord:
        raw = await self._store.get(key_id)
        if raw is None:
            raise NotFound(f"Key {key_id} not found")
        return KeyRecord.model_validate(raw)

    async def list(self, tenant: str | None = None) -> list[KeyRecord]:
        records = [KeyRecord.model_validate(raw) for raw in await self._store.all()]
        return [r for r in records if tenant is None or r.tenant == tenant]

    async def update(self, key_id: str, spec: KeySpec, *, actor: Actor) -> KeyRecord:
        return await self._modify(key_id, "update", actor, spec.model_dump(exclude_unset=True))

    async def disable(self, key_id: str, *, actor: Actor) -> KeyRecord:
        return await self._modify(key_id, "disable", actor, {"disabled": True})

    async def delete(self, key_id: str, *, actor: Actor) -> None:
        def delete(current: KeyRecord | None) -> None:
            _existing(key_id, current)

        await self._write(key_id, "delete", actor, delete)

    async def rotate(self, key_id: str, grace_seconds: float = 0, *, actor: Actor) -> tuple[KeyRecord, Token]:
        """A new secret for the same key id; the old one keeps working for `grace_seconds`."""
        token = new_token(key_id)

        def rotate(current: KeyRecord | None) -> KeyRecord:
            record = _existing(key_id, current)
            return record.model_copy(
                update={
                    "secret_hash": hash_secret(token.secret),
                    "secret_hint": token.secret[-4:],
                    "previous_secret_hash": record.secret_hash if grace_seconds > 0 else None,
                    "previous_valid_until": time.time() + grace_seconds if grace_seconds > 0 else None,
                }
            )

        rotated = await self._write(key_id, "rotate", actor, rotate)
        assert rotated is not None
        return rotated, token

    async def _modify(self, key_id: str, operation: str, actor: Actor, fields: dict[str, Any]) -> KeyRecord:
        def modify(current: KeyRecord | None) -> KeyRecord:
            return _existing(key_id, current).model_copy(update=fields)

        updated = await self._write(key_id, operation, actor, modify)
        assert updated is not None
        return updated

    async def _write(self, key_id: str, operation: str, actor: Actor, change: Change) -> KeyRecord | None:
        """Apply `change` to the stored record with its audit entry; returns the record after (None: deleted)."""

        def apply(raw: StoredKey | None) -> tuple[StoredKey | None, AuditFields]:
            before = None if raw is None else KeyRecord.model_validate(raw)
            after = change(before)
            return (None if after is None else after.model_dump()), _event(key_id, operation, actor, before, after).fields()

        _, raw_after = await self._store.change(key_id, apply)
        return None if raw_after is None else KeyRecord.model_validate(raw_after)


def _existing(key_id: str, record: KeyRecord | None) -> KeyRecord:
    if record is None:
        raise NotFound(f"Key {key_id} not found")
    return record


def _event(key_id: str, operation: str, actor: Actor, before: KeyRecord | None, after: KeyRecord | None) -> AuditEvent:
    tenants = tuple(r.tenant for r in (before, after) if r is not None)
    return AuditEvent(
        action=f"key.{operation}",
        subject=Subject("key", key_id),
        tenants=tenants,
        actor=actor,
        before=None if before is None else before.redacted(),
        after=None if after is None else after.redacted(),
    )
