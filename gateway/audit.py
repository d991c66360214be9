"""The audit log of admin actions: who did what to which subject, when, and the subject before and after.

The recorder is generic: an action name (`key.rotate`, later `limit.update`), a subject (kind and id), the
tenants it concerns, and secret-free `before`/`after` views chosen by the caller. Writers put the entry in
their own store transaction (`AuditEvent.fields`); `AuditLog` reads it back for the admin API and the CLI.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import uuid
from dataclasses import dataclass
from typing import Any

from gateway.store import AuditFields, AuditFilter, AuditStore
from gateway.timestamps import timestamp

MAX_PAGE_SIZE = 1000
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

View = dict[str, Any]


def new_request_id() -> str:
    return uuid.uuid4().hex


def sane_request_id(given: str | None) -> str:
    """A client's request id when it is short and plain (letters, digits, `._:-`), else a new one."""
    return given if given is not None and _SANE_REQUEST_ID.match(given) else new_request_id()


@dataclass(frozen=True)
class Actor:
    """Who acted: `kind` is how they authenticated (`admin-token`, `cli`), `source` where from (client address,
    OS user), `request_id` ties the action to one request or command."""

    kind: str
    source: str
    request_id: str

    @classmethod
    def cli(cls) -> Actor:
        """The OS user running this command, by effective uid (not `$USER`, which the caller can set)."""
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = f"uid {os.geteuid()}"
        return cls("cli", user, new_request_id())


@dataclass(frozen=True)
class Subject:
    kind: str
    id: str


@dataclass(frozen=True)
class AuditEvent:
    """One admin action. `before`/`after` are None when the subject did not exist before or no longer does;
    callers pass views without secrets."""

    action: str
    subject: Subject
    tenants: tuple[str, ...]
    actor: Actor
    before: View | None
    after: View | None

    def fields(self) -> AuditFields:
        """The stream entry; filterable fields are plain strings, and the entry id (Redis's clock) is its time."""
        return {
            "action": self.action,
            "subject_kind": self.subject.kind,
            "subject_id": self.subject.id,
            "tenants": " ".join(sorted(set(self.tenants))),
            "actor_kind": self.actor.kind,
            "actor_source": self.actor.source,
            "request_id": self.actor.request_id,
            "before": json.dumps(self.before, separators=(",", ":")),
            "after": json.dumps(self.after, separators=(",", ":")),
        }


@dataclass(frozen=True)
class AuditQuery:
    """Filters of a read; times are epoch seconds, `cursor` the `next_cursor` of the previous page."""

    subject: Subject | None = None
    tenant: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100
    cursor: str | None = None


@dataclass(frozen=True)
class AuditEntries:
    results: list[View]
    next_cursor: str | None


class AuditLog:
    """Reads the audit log, newest first."""

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def read(self, query: AuditQuery) -> AuditEntries:
        page = await self._store.page(_filter(query))
        return AuditEntries([_shown(entry_id, entry) for entry_id, entry in page.entries], page.next_before)


def _filter(query: AuditQuery) -> AuditFilter:
    fields = {"action": query.action} if query.action else {}
    if query.subject is not None:
        fields |= {"subject_kind": query.subject.kind, "subject_id": query.subject.id}
    return AuditFilter(
        fields=fields,
        tenant=query.tenant,
        since_ms=None if query.since is None else int(query.since * 1000),
        until_ms=None if query.until is None else int(query.until * 1000),
        before=query.cursor,
        limit=max(1, min(query.limit, MAX_PAGE_SIZE)),
    )


def _shown(entry_id: str, entry: AuditFields) -> View:
    return {
        "id": entry_id,
        "time": timestamp(int(entry_id.split("-")[0]) / 1000),
        "action": entry["action"],
        "subject": {"kind": entry["subject_kind"], "id": entry["subject_id"]},
        "tenants": entry["tenants"].split(),
        "actor": {"kind": entry["actor_kind"], "source": entry["actor_source"]},
        "request_id": entry["request_id"],
        "before": json.loads(entry["before"]),
        "after": json.loads(entry["after"]),
    }
