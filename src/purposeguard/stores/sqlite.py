"""The embedded default :class:`~purposeguard.stores.Store`: one SQLite file.

- WAL journal, so readers never block the writer and a process killed mid-write (``kill -9``)
  leaves the last committed state; ``synchronous=FULL`` by default, so a commit survives power
  loss too (pass ``synchronous="NORMAL"`` to trade that for speed).
- One connection per thread (and per process: a forked child opens its own), a ``busy_timeout``
  so that writers from other threads and processes wait their turn instead of failing, and
  ``BEGIN IMMEDIATE`` for every change so a read-modify-write never interleaves.
- Every change to consents or suspensions bumps ``meta.changes`` in its own transaction; other
  processes poll that counter (see :class:`~purposeguard.Registry`'s ``refresh_interval``).
- The schema is versioned with ``PRAGMA user_version``; a file written by a newer purposeguard is
  refused rather than guessed at.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Literal

from ..exceptions import ConfigurationError
from . import (
    ConsentKind,
    ConsentRow,
    ProvisionRecord,
    Scope,
    Snapshot,
    SuspensionRow,
    format_ts,
    parse_ts,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

#: The schema this code writes; files with a higher ``user_version`` are refused.
SCHEMA_VERSION = 2
#: The change log keeps at least this many recent changes for other processes to catch up from;
#: a reader further behind reads everything again.
CHANGE_LOG_KEEP = 100_000

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta (key, value) VALUES ('changes', 0)",
    """CREATE TABLE consents (
        ref TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('purpose', 'recipient')),
        target TEXT NOT NULL,
        granted_at TEXT NOT NULL,
        withdrawn_at TEXT
    )""",
    "CREATE UNIQUE INDEX consents_active ON consents (subject, kind, target) "
    "WHERE withdrawn_at IS NULL",
    "CREATE INDEX consents_subject ON consents (subject)",
    """CREATE TABLE suspensions (
        subject TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('use', 'provision')),
        target TEXT NOT NULL,
        since TEXT NOT NULL,
        PRIMARY KEY (subject, scope, target)
    )""",
    """CREATE TABLE provisions (
        id TEXT PRIMARY KEY,
        ts TEXT NOT NULL,
        recipient TEXT NOT NULL,
        recipient_kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        fields TEXT NOT NULL,
        basis TEXT NOT NULL,
        ground TEXT,
        justification TEXT,
        consent_ref TEXT,
        purpose TEXT,
        policy_id TEXT,
        policy_version TEXT,
        violation TEXT
    )""",
    "CREATE INDEX provisions_subject ON provisions (subject, ts)",
    "CREATE INDEX provisions_ts ON provisions (ts)",
)
#: Schema 2: a log of which subject each change touched, so other processes catch up by subject.
_SCHEMA_2 = ("CREATE TABLE changes (version INTEGER PRIMARY KEY, subject TEXT NOT NULL)",)


class SQLiteStore:
    """A :class:`~purposeguard.stores.Store` in the SQLite file at ``path`` (created if absent).

    ``busy_timeout`` is how long (seconds) a writer waits for another writer's lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 10.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigurationError("synchronous must be 'FULL' or 'NORMAL'")
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        self._migrate()

    # --- connections ----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        if self._closed:
            raise ConfigurationError(f"the store {self.path} is closed")
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # explicit BEGIN/COMMIT only
            check_same_thread=False,  # used by its own thread; closed by close() from any
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as tx:
            found = tx.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"the registry store {self.path} has schema version {found}; this purposeguard "
                    f"reads up to {SCHEMA_VERSION}: upgrade purposeguard"
                )
            if found == 0:
                for statement in _SCHEMA:
                    tx.execute(statement)
            if found < 2:
                for statement in _SCHEMA_2:
                    tx.execute(statement)
            if found < SCHEMA_VERSION:
                tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @staticmethod
    def _bump(tx: sqlite3.Connection, subject: str) -> None:
        tx.execute("UPDATE meta SET value = value + 1 WHERE key = 'changes'")
        version = int(tx.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()[0])
        tx.execute("INSERT INTO changes (version, subject) VALUES (?, ?)", (version, subject))
        if version % 1000 == 0:
            tx.execute("DELETE FROM changes WHERE version <= ?", (version - CHANGE_LOG_KEEP,))

    # --- consents and suspensions ---------------------------------------------------------------

    def grant(self, subject: str, kind: ConsentKind, target: str, at: datetime) -> str:
        with self._write() as tx:
            row = tx.execute(
                "SELECT ref FROM consents WHERE subject = ? AND kind = ? AND target = ? "
                "AND withdrawn_at IS NULL",
                (subject, kind, target),
            ).fetchone()
            if row is not None:
                return str(row[0])
            ref = "consent-" + uuid.uuid4().hex
            tx.execute(
                "INSERT INTO consents (ref, subject, kind, target, granted_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (ref, subject, kind, target, format_ts(at)),
            )
            self._bump(tx, subject)
            return ref

    def withdraw(self, subject: str, kind: ConsentKind, target: str, at: datetime) -> bool:
        with self._write() as tx:
            cursor = tx.execute(
                "UPDATE consents SET withdrawn_at = ? WHERE subject = ? AND kind = ? "
                "AND target = ? AND withdrawn_at IS NULL",
                (format_ts(at), subject, kind, target),
            )
            if cursor.rowcount:
                self._bump(tx, subject)
            return cursor.rowcount > 0

    def suspend(self, subject: str, scope: Scope, target: str, at: datetime) -> None:
        with self._write() as tx:
            cursor = tx.execute(
                "INSERT OR IGNORE INTO suspensions (subject, scope, target, since) "
                "VALUES (?, ?, ?, ?)",
                (subject, scope, target, format_ts(at)),
            )
            if cursor.rowcount:
                self._bump(tx, subject)

    def resume(self, subject: str, scope: Scope, target: str | None) -> int:
        with self._write() as tx:
            if target is None:
                cursor = tx.execute(
                    "DELETE FROM suspensions WHERE subject = ? AND scope = ?", (subject, scope)
                )
            else:
                cursor = tx.execute(
                    "DELETE FROM suspensions WHERE subject = ? AND scope = ? AND target = ?",
                    (subject, scope, target),
                )
            if cursor.rowcount:
                self._bump(tx, subject)
            return cursor.rowcount

    def consents(self, subject: str) -> list[ConsentRow]:
        rows = self._conn().execute(
            "SELECT ref, subject, kind, target, granted_at, withdrawn_at FROM consents "
            "WHERE subject = ? ORDER BY granted_at, ref",
            (subject,),
        )
        return [
            ConsentRow(ref, subj, kind, target, parse_ts(granted), parse_ts(w) if w else None)
            for ref, subj, kind, target, granted, w in rows
        ]

    def suspensions(self, subject: str) -> list[SuspensionRow]:
        rows = self._conn().execute(
            "SELECT subject, scope, target, since FROM suspensions WHERE subject = ? "
            "ORDER BY since, scope, target",
            (subject,),
        )
        return [
            SuspensionRow(subj, scope, target, parse_ts(since))
            for subj, scope, target, since in rows
        ]

    def version(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()
        return int(row[0])

    def snapshot(self) -> Snapshot:
        with self._read() as tx:
            version = int(tx.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()[0])
            restricted = {
                s
                for (s,) in tx.execute(
                    "SELECT subject FROM suspensions UNION "
                    "SELECT subject FROM consents WHERE withdrawn_at IS NOT NULL"
                )
            }
            consenting = {
                s
                for (s,) in tx.execute(
                    "SELECT DISTINCT subject FROM consents WHERE withdrawn_at IS NULL"
                )
            }
        return Snapshot(version, frozenset(restricted), frozenset(consenting))

    def changes_since(self, version: int) -> tuple[int, frozenset[str]] | None:
        with self._read() as tx:
            current = int(tx.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()[0])
            if current == version:
                return current, frozenset()
            oldest = tx.execute("SELECT MIN(version) FROM changes").fetchone()[0]
            if version < 0 or current < version or oldest is None or oldest > version + 1:
                return None
            rows = tx.execute("SELECT DISTINCT subject FROM changes WHERE version > ?", (version,))
            return current, frozenset(s for (s,) in rows)

    def flags(self, subjects: frozenset[str]) -> dict[str, tuple[bool, bool]]:
        out: dict[str, tuple[bool, bool]] = {}
        with self._read() as tx:
            for subject in subjects:
                restricted = tx.execute(
                    "SELECT EXISTS (SELECT 1 FROM suspensions WHERE subject = ?) OR EXISTS "
                    "(SELECT 1 FROM consents WHERE subject = ? AND withdrawn_at IS NOT NULL)",
                    (subject, subject),
                ).fetchone()[0]
                consenting = tx.execute(
                    "SELECT EXISTS (SELECT 1 FROM consents WHERE subject = ? "
                    "AND withdrawn_at IS NULL)",
                    (subject,),
                ).fetchone()[0]
                out[subject] = (bool(restricted), bool(consenting))
        return out

    # --- provision records ----------------------------------------------------------------------

    def add_provision(self, record: ProvisionRecord) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT INTO provisions (id, ts, recipient, recipient_kind, subject, fields, basis, "
                "ground, justification, consent_ref, purpose, policy_id, policy_version, "
                "violation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    format_ts(record.ts),
                    record.recipient,
                    record.recipient_kind,
                    record.subject,
                    json.dumps(list(record.fields)),
                    record.basis,
                    record.ground,
                    record.justification,
                    record.consent_ref,
                    record.purpose,
                    record.policy_id,
                    record.policy_version,
                    record.violation,
                ),
            )

    def provisions(self, subject: str) -> list[ProvisionRecord]:
        rows = self._conn().execute(
            "SELECT id, ts, recipient, recipient_kind, subject, fields, basis, ground, "
            "justification, consent_ref, purpose, policy_id, policy_version, violation "
            "FROM provisions WHERE subject = ? ORDER BY ts, id",
            (subject,),
        )
        return [
            ProvisionRecord(
                id=r[0],
                ts=parse_ts(r[1]),
                recipient=r[2],
                recipient_kind=r[3],
                subject=r[4],
                fields=tuple(json.loads(r[5])),
                basis=r[6],
                ground=r[7],
                justification=r[8],
                consent_ref=r[9],
                purpose=r[10],
                policy_id=r[11],
                policy_version=r[12],
                violation=r[13],
            )
            for r in rows
        ]

    def purge_provisions(self, before: datetime) -> int:
        with self._write() as tx:
            return tx.execute("DELETE FROM provisions WHERE ts < ?", (format_ts(before),)).rowcount

    def integrity_check(self) -> str:
        """SQLite's own ``PRAGMA integrity_check``: ``"ok"`` for a sound file."""
        return str(self._conn().execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        """Close every connection this store opened, in every thread."""
        with self._all_lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()
