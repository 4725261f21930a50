"""Where the subject registry keeps its state: consents, suspensions and provision records.

:class:`Store` is the interface; :class:`~purposeguard.stores.sqlite.SQLiteStore` (a file, WAL,
safe across threads and processes) is the embedded default and
:class:`~purposeguard.stores.memory.MemoryStore` keeps everything in the process, for tests.

Stores hold subject ids in clear: a data subject's request for the records of provision needs
them. They never reach a log, an event or an exception message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from .._time import format_ts, parse_ts

__all__ = [
    "ALL",
    "ConsentKind",
    "ConsentRow",
    "ProvisionRecord",
    "Scope",
    "Snapshot",
    "Store",
    "SuspensionRow",
    "format_ts",
    "parse_ts",
]

#: The target of a suspension that covers every purpose (use) or every recipient (provision).
ALL = "*"

ConsentKind = Literal["purpose", "recipient"]
Scope = Literal["use", "provision"]


@dataclass(frozen=True, slots=True)
class ConsentRow:
    """One consent: to a purpose, or to provision to a recipient. ``ref`` identifies it in
    provision records; ``withdrawn_at`` is set once it is withdrawn (it is never deleted)."""

    ref: str
    subject: str
    kind: ConsentKind
    target: str
    granted_at: datetime
    withdrawn_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.withdrawn_at is None


@dataclass(frozen=True, slots=True)
class SuspensionRow:
    """A suspension of use (``target`` a purpose id, or :data:`ALL`) or of third-party
    provision (``target`` a recipient name, or :data:`ALL`)."""

    subject: str
    scope: Scope
    target: str
    since: datetime


@dataclass(frozen=True, slots=True)
class ProvisionRecord:
    """One provision of personal data to someone outside, as the law asks it to be recorded.

    ``fields`` are the names of the data items, never their values. ``basis`` is ``consent``,
    ``legal_ground``, ``entrustment``, ``succession`` or ``joint_use``; ``ground`` and
    ``justification`` are set for a legal ground, ``consent_ref`` for consent. ``violation`` is
    the reason a provision that went ahead in monitor mode should have been denied.
    """

    id: str
    ts: datetime
    recipient: str
    recipient_kind: str
    subject: str
    fields: tuple[str, ...]
    basis: str
    ground: str | None = None
    justification: str | None = None
    consent_ref: str | None = None
    purpose: str | None = None
    policy_id: str | None = None
    policy_version: str | None = None
    violation: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the form of ``purposeguard records``)."""
        return {
            "id": self.id,
            "ts": format_ts(self.ts),
            "recipient": self.recipient,
            "recipient_kind": self.recipient_kind,
            "subject": self.subject,
            "fields": list(self.fields),
            "basis": self.basis,
            "ground": self.ground,
            "justification": self.justification,
            "consent_ref": self.consent_ref,
            "purpose": self.purpose,
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "violation": self.violation,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the decision path keeps in memory: the change counter it was read at, the subjects
    with any restriction (a suspension or a withdrawn consent) and those with active consents."""

    version: int
    restricted: frozenset[str]
    consenting: frozenset[str]


class Store(Protocol):
    """The storage behind a :class:`~purposeguard.Registry`.

    Every change bumps a change counter (:meth:`version`) in the same transaction, so a reader
    that sees the new counter sees the change. Implementations must be safe to call from any
    thread.
    """

    def grant(self, subject: str, kind: ConsentKind, target: str, at: datetime) -> str:
        """Record a consent; returns its ref (the existing one if already active)."""
        ...

    def withdraw(self, subject: str, kind: ConsentKind, target: str, at: datetime) -> bool:
        """Withdraw the active consent; False if there was none."""
        ...

    def suspend(self, subject: str, scope: Scope, target: str, at: datetime) -> None: ...

    def resume(self, subject: str, scope: Scope, target: str | None) -> int:
        """Lift the suspension of ``target`` (every one in ``scope`` if None); how many."""
        ...

    def consents(self, subject: str) -> list[ConsentRow]:
        """Every consent of the subject, withdrawn ones included, oldest first."""
        ...

    def suspensions(self, subject: str) -> list[SuspensionRow]: ...

    def version(self) -> int:
        """The change counter: cheap, called by the poller of other processes' changes."""
        ...

    def snapshot(self) -> Snapshot:
        """The counter and the restricted/consenting subject sets, read consistently."""
        ...

    def changes_since(self, version: int) -> tuple[int, frozenset[str]] | None:
        """The current counter and the subjects changed after ``version``; None if the store no
        longer knows (its change log was trimmed past it): then read a :meth:`snapshot`."""
        ...

    def flags(self, subjects: frozenset[str]) -> dict[str, tuple[bool, bool]]:
        """For each subject: (restricted, consenting), as in :class:`Snapshot`."""
        ...

    def add_provision(self, record: ProvisionRecord) -> None: ...

    def provisions(self, subject: str) -> list[ProvisionRecord]:
        """The subject's provision records, oldest first."""
        ...

    def purge_provisions(self, before: datetime) -> int:
        """Delete provision records older than ``before``; how many."""
        ...

    def close(self) -> None: ...
