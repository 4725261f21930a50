"""An in-process :class:`~purposeguard.stores.Store`: for tests and single-process tools."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import datetime

from . import (
    ConsentKind,
    ConsentRow,
    ProvisionRecord,
    Scope,
    Snapshot,
    SuspensionRow,
)

__all__ = ["MemoryStore"]


class MemoryStore:
    """Everything in dicts behind one lock. Nothing survives the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self._consents: list[ConsentRow] = []
        self._suspensions: dict[tuple[str, Scope, str], SuspensionRow] = {}
        self._provisions: list[ProvisionRecord] = []
        self._log: dict[int, str] = {}  # version → subject changed

    def _bump(self, subject: str) -> None:
        self._version += 1
        self._log[self._version] = subject
        self._log.pop(self._version - 100_000, None)

    def grant(self, subject: str, kind: ConsentKind, target: str, at: datetime) -> str:
        with self._lock:
            for row in self._consents:
                if row.active and (row.subject, row.kind, row.target) == (subject, kind, target):
                    return row.ref
            ref = "consent-" + uuid.uuid4().hex
            self._consents.append(ConsentRow(ref, subject, kind, target, at))
            self._bump(subject)
            return ref

    def withdraw(self, subject: str, kind: ConsentKind, target: str, at: datetime) -> bool:
        with self._lock:
            for i, row in enumerate(self._consents):
                if row.active and (row.subject, row.kind, row.target) == (subject, kind, target):
                    self._consents[i] = replace(row, withdrawn_at=at)
                    self._bump(subject)
                    return True
            return False

    def suspend(self, subject: str, scope: Scope, target: str, at: datetime) -> None:
        with self._lock:
            key = (subject, scope, target)
            if key not in self._suspensions:
                self._suspensions[key] = SuspensionRow(subject, scope, target, at)
                self._bump(subject)

    def resume(self, subject: str, scope: Scope, target: str | None) -> int:
        with self._lock:
            keys = [
                k
                for k in self._suspensions
                if k[0] == subject and k[1] == scope and (target is None or k[2] == target)
            ]
            for k in keys:
                del self._suspensions[k]
            if keys:
                self._bump(subject)
            return len(keys)

    def consents(self, subject: str) -> list[ConsentRow]:
        with self._lock:
            return [row for row in self._consents if row.subject == subject]

    def suspensions(self, subject: str) -> list[SuspensionRow]:
        with self._lock:
            return [row for row in self._suspensions.values() if row.subject == subject]

    def version(self) -> int:
        return self._version

    def snapshot(self) -> Snapshot:
        with self._lock:
            restricted = {k[0] for k in self._suspensions}
            restricted |= {row.subject for row in self._consents if not row.active}
            consenting = {row.subject for row in self._consents if row.active}
            return Snapshot(self._version, frozenset(restricted), frozenset(consenting))

    def changes_since(self, version: int) -> tuple[int, frozenset[str]] | None:
        with self._lock:
            if version == self._version:
                return version, frozenset()
            if version < 0 or version > self._version or (version + 1) not in self._log:
                return None
            return self._version, frozenset(
                self._log[v] for v in range(version + 1, self._version + 1)
            )

    def flags(self, subjects: frozenset[str]) -> dict[str, tuple[bool, bool]]:
        with self._lock:
            out = dict.fromkeys(subjects, (False, False))
            for key in self._suspensions:
                if key[0] in out:
                    out[key[0]] = (True, out[key[0]][1])
            for row in self._consents:
                if row.subject in out:
                    restricted, consenting = out[row.subject]
                    out[row.subject] = (restricted or not row.active, consenting or row.active)
            return out

    def add_provision(self, record: ProvisionRecord) -> None:
        with self._lock:
            self._provisions.append(record)

    def provisions(self, subject: str) -> list[ProvisionRecord]:
        with self._lock:
            found = [r for r in self._provisions if r.subject == subject]
        return sorted(found, key=lambda r: (r.ts, r.id))

    def purge_provisions(self, before: datetime) -> int:
        with self._lock:
            kept = [r for r in self._provisions if r.ts >= before]
            purged = len(self._provisions) - len(kept)
            self._provisions = kept
            return purged

    def close(self) -> None:
        pass
