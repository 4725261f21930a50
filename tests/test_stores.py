"""Stores: the same contract in memory and in a real SQLite file; concurrency across threads and
processes; a writer killed with SIGKILL mid-write leaves a consistent file."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from purposeguard.exceptions import ConfigurationError
from purposeguard.stores import ALL, ProvisionRecord, Store
from purposeguard.stores.memory import MemoryStore
from purposeguard.stores.sqlite import SCHEMA_VERSION, SQLiteStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "r.db")
    yield made
    made.close()


def record(subject: str, ts: datetime, n: int = 0) -> ProvisionRecord:
    return ProvisionRecord(
        id=f"prov-{subject}-{n}-{ts.timestamp()}",
        ts=ts,
        recipient="tax_office",
        recipient_kind="third_party",
        subject=subject,
        fields=("my_number", "name"),
        basis="legal_ground",
        ground="required_by_law",
        justification="Income Tax Act art. 226",
    )


def test_grant_is_idempotent_while_active_and_withdraw_keeps_history(store: Store) -> None:
    ref = store.grant("s1", "purpose", "marketing", T0)
    assert ref == store.grant("s1", "purpose", "marketing", T0)
    assert store.withdraw("s1", "purpose", "marketing", T0 + timedelta(days=1))
    assert not store.withdraw("s1", "purpose", "marketing", T0)
    again = store.grant("s1", "purpose", "marketing", T0 + timedelta(days=2))
    rows = store.consents("s1")
    assert [r.ref for r in rows] == [ref, again]
    assert [r.active for r in rows] == [False, True]
    assert rows[0].withdrawn_at == T0 + timedelta(days=1)


def test_every_change_bumps_the_counter_and_the_snapshot_sees_it(store: Store) -> None:
    v0 = store.version()
    store.grant("s1", "recipient", "partner_events", T0)
    store.suspend("s2", "use", ALL, T0)
    store.suspend("s2", "use", ALL, T0)  # no change: no bump
    store.withdraw("s3", "purpose", "marketing", T0)  # nothing to withdraw: no bump
    snap = store.snapshot()
    assert snap.version == v0 + 2 == store.version()
    assert snap.restricted == frozenset({"s2"})
    assert snap.consenting == frozenset({"s1"})
    store.withdraw("s1", "recipient", "partner_events", T0)
    assert store.snapshot().restricted == frozenset({"s1", "s2"})


def test_resume_lifts_the_named_suspension_or_all_of_a_scope(store: Store) -> None:
    store.suspend("s", "use", "marketing", T0)
    store.suspend("s", "use", "recruitment", T0)
    store.suspend("s", "provision", ALL, T0)
    assert store.resume("s", "use", "marketing") == 1
    assert [r.target for r in store.suspensions("s") if r.scope == "use"] == ["recruitment"]
    assert store.resume("s", "use", None) == 1
    assert store.resume("s", "provision", None) == 1
    assert store.suspensions("s") == []
    assert store.snapshot().restricted == frozenset()


def test_provision_records_per_subject_oldest_first_and_purged(store: Store) -> None:
    for n, days in enumerate((3, 1, 2)):
        store.add_provision(record("alice", T0 + timedelta(days=days), n))
    store.add_provision(record("bob", T0))
    found = store.provisions("alice")
    assert [r.ts for r in found] == [T0 + timedelta(days=d) for d in (1, 2, 3)]
    assert found[0].fields == ("my_number", "name")
    assert found[0].justification == "Income Tax Act art. 226"
    assert store.purge_provisions(T0 + timedelta(days=2)) == 2  # bob's and alice's day 1
    assert [r.ts.day for r in store.provisions("alice")] == [3, 4]
    assert store.provisions("bob") == []


def test_sqlite_file_uses_wal_and_a_versioned_schema(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigurationError, match="upgrade purposeguard"):
        SQLiteStore(path)


def test_sqlite_reopens_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    first = SQLiteStore(path)
    ref = first.grant("s", "recipient", "tax_office", T0)
    first.close()
    second = SQLiteStore(path)
    assert [r.ref for r in second.consents("s")] == [ref]
    assert second.version() == 1
    second.close()


def test_sqlite_closed_store_refuses_use(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "r.db")
    s.close()
    with pytest.raises(ConfigurationError, match="closed"):
        s.version()


def test_sqlite_concurrent_writers_from_threads(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "r.db", synchronous="NORMAL")
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for n in range(40):
                s.grant(f"t{i}-{n}", "purpose", "marketing", T0)
                if n % 4 == 0:
                    s.suspend(f"t{i}-{n}", "use", ALL, T0)
                    s.add_provision(record(f"t{i}-{n}", T0, n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert s.version() == 6 * (40 + 10)
    snap = s.snapshot()
    assert len(snap.consenting) == 240
    assert len(snap.restricted) == 60
    assert sum(len(s.provisions(f"t{i}-{n}")) for i in range(6) for n in range(0, 40, 4)) == 60
    assert s.integrity_check() == "ok"
    s.close()


def _process_writer(path: str, prefix: str, count: int) -> None:
    s = SQLiteStore(path, synchronous="NORMAL")
    for n in range(count):
        s.grant(f"{prefix}{n}", "recipient", "partner_events", T0)
        s.add_provision(record(f"{prefix}{n}", T0, n))
    s.close()


def test_sqlite_concurrent_writers_from_two_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    SQLiteStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(path, p, 60)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    s = SQLiteStore(path)
    assert s.version() == 120
    assert len(s.snapshot().consenting) == 120
    assert len(s.provisions("a7")) == len(s.provisions("b59")) == 1
    assert s.integrity_check() == "ok"
    s.close()


_KILLED_WRITER = """
import sys
from datetime import UTC, datetime
from purposeguard.stores import ProvisionRecord
from purposeguard.stores.sqlite import SQLiteStore
s = SQLiteStore(sys.argv[1])
now = datetime.now(UTC)
n = 0
while True:
    s.grant(f"k{n}", "purpose", "marketing", now)
    s.add_provision(ProvisionRecord(id=f"p{n}", ts=now, recipient="tax_office",
        recipient_kind="third_party", subject=f"k{n}", fields=("a",) * 50, basis="consent"))
    n += 1
    if n == 20:
        print("ready", flush=True)
"""


def test_sqlite_writer_killed_mid_write_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    SQLiteStore(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)  # it is writing continuously: the kill lands mid-transaction or between
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    s = SQLiteStore(path)
    assert s.integrity_check() == "ok"
    # each grant bumps the counter in its own transaction: no torn change survives
    consents = len(s.snapshot().consenting)
    assert consents >= 20
    assert s.version() == consents
    logged = s._conn().execute("SELECT COUNT(*), MAX(version) FROM changes").fetchone()
    assert tuple(logged) == (consents, consents)  # the change log is torn-free too
    # every provision belongs to a granted subject, and is whole
    for n in range(consents - 1):
        assert [r.fields for r in s.provisions(f"k{n}")] == [("a",) * 50]
    s.grant("after", "purpose", "marketing", T0)  # and the file stays writable
    s.close()


def test_changes_since_names_the_subjects_changed_and_flags_reads_them(store: Store) -> None:
    v0 = store.version()
    assert store.changes_since(v0) == (v0, frozenset())
    store.grant("a", "purpose", "marketing", T0)
    store.suspend("b", "use", ALL, T0)
    store.withdraw("a", "purpose", "marketing", T0)
    assert store.changes_since(v0) == (v0 + 3, frozenset({"a", "b"}))
    assert store.changes_since(v0 + 2) == (v0 + 3, frozenset({"a"}))
    assert store.flags(frozenset({"a", "b", "c"})) == {
        "a": (True, False),
        "b": (True, False),
        "c": (False, False),
    }
    store.grant("c", "recipient", "tax_office", T0)
    assert store.flags(frozenset({"c"})) == {"c": (False, True)}
    assert store.changes_since(v0 + 99) is None  # from the future: read everything


def test_sqlite_changes_since_is_none_once_the_log_is_trimmed(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "r.db")
    for n in range(3):
        s.grant(f"s{n}", "purpose", "marketing", T0)
    with s._write() as tx:
        tx.execute("DELETE FROM changes WHERE version <= 2")
    assert s.changes_since(0) is None
    assert s.changes_since(2) == (3, frozenset({"s2"}))
    s.close()


def test_sqlite_migrates_a_schema_1_file(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE changes")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    s = SQLiteStore(path)
    s.grant("a", "purpose", "marketing", T0)
    assert s.changes_since(0) == (1, frozenset({"a"}))
    assert s._conn().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    s.close()
