"""The audit log writer: chain, checkpoints, rotation, buffer policy, fork, crash and restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from purposeguard.cli._verify import verify_log
from purposeguard.sinks.audit import (
    AUDIT_KEY_ENV,
    CHECKPOINT_EVENT,
    DROPPED_EVENT,
    GENESIS_HASH,
    HEADER_EVENT,
    UNSERIALIZABLE_EVENT,
    AuditLog,
    line_hash,
)

KEY = b"test-key-0123456789abcdef"


def violation(i: int = 0, **extra: object) -> dict[str, object]:
    return {
        "event": "purposeguard.violation",
        "schema": "purposeguard.violation/1",
        "ts": "2024-09-01T00:00:00Z",
        "purpose": "marketing",
        "field": "hr.models.Applicant.email",
        "i": i,
        **extra,
    }


def files_of(path: Path) -> list[str]:
    return sorted(str(p) for p in path.parent.glob(path.name + "*"))


def records_of(path: Path) -> list[dict[str, object]]:
    out = []
    for name in files_of(path):
        with open(name, "rb") as f:
            out += [json.loads(line) for line in f if line.endswith(b"\n")]
    return sorted(out, key=lambda r: r["seq"])


def test_records_are_chained_and_the_log_is_sealed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "violations.jsonl"
    log = AuditLog(path, key=KEY, checkpoint_every=4)
    for i in range(10):
        log.emit(violation(i))
    log.close()

    lines = path.read_bytes().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["seq"] for r in recs] == list(range(len(recs)))
    assert recs[0]["event"] == HEADER_EVENT
    assert recs[0]["prev_hash"] == GENESIS_HASH
    for prev, rec in zip(lines, recs[1:], strict=False):
        assert rec["prev_hash"] == line_hash(prev)
    assert all(r["event"] == CHECKPOINT_EVENT for r in recs if r["seq"] and r["seq"] % 4 == 0)
    assert recs[-1]["event"] == CHECKPOINT_EVENT
    assert recs[-1]["final"] is True
    assert [r["i"] for r in recs if r["event"] == "purposeguard.violation"] == list(range(10))
    assert verify_log([str(path)], key=KEY, expect_sealed=True).exit_code() == 0


def test_rotation_keeps_one_chain_and_every_file_starts_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "violations.jsonl"
    log = AuditLog(path, key=KEY, max_bytes=1500, checkpoint_every=5)
    for i in range(60):
        log.emit(violation(i))
        if i % 6 == 5:
            assert log.flush(5)
    log.close()

    names = files_of(path)
    assert len(names) > 3
    assert (tmp_path / "violations.jsonl.1").exists()
    for name in names:
        first = json.loads(Path(name).read_bytes().splitlines()[0])
        assert first["event"] == HEADER_EVENT
    result = verify_log(names, key=KEY, expect_sealed=True, expect_genesis=True)
    assert (result.failure, result.exit_code()) == (None, 0)
    assert sum(r["event"] == "purposeguard.violation" for r in records_of(path)) == 60


def test_without_a_key_the_chain_is_written_unsigned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AUDIT_KEY_ENV, raising=False)
    path = tmp_path / "v.jsonl"
    log = AuditLog(path)
    log.emit(violation())
    log.close()
    header = json.loads(path.read_bytes().splitlines()[0])
    assert (header["sig"], header["kid"]) == (None, None)
    result = verify_log([str(path)])
    assert result.failure is None
    assert result.exit_code() == 1
    assert result.exit_code(allow_unsigned=True) == 0


def test_the_key_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUDIT_KEY_ENV, KEY.decode())
    path = tmp_path / "v.jsonl"
    log = AuditLog(path)
    log.emit(violation())
    log.close()
    assert verify_log([str(path)], key=KEY, expect_sealed=True).exit_code() == 0
    assert verify_log([str(path)], key=b"another key").exit_code() == 1


@pytest.mark.parametrize("when_full", ["drop", "block"])
def test_drops_are_counted_and_written(tmp_path: Path, when_full: str) -> None:
    path = tmp_path / "v.jsonl"
    log = AuditLog(path, key=KEY, buffer_size=1, when_full=when_full, block_timeout=0.01)  # type: ignore[arg-type]
    log._thread = threading.Thread(target=lambda: None)  # a writer that never drains
    log.emit(violation(0))  # fills the buffer
    for i in range(5):
        log.emit(violation(i + 1))
    assert log._dropped == 5
    log._thread = None
    log._start_writer()
    log.close()
    recs = records_of(path)
    assert [r["count"] for r in recs if r["event"] == DROPPED_EVENT] == [5]
    assert [r["i"] for r in recs if r["event"] == "purposeguard.violation"] == [0]


def test_a_busy_writer_loses_nothing_silently_in_block_mode(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    log = AuditLog(path, key=KEY, buffer_size=2, when_full="block", block_timeout=0.05)
    for i in range(200):
        log.emit(violation(i))
    log.close()
    recs = records_of(path)
    written = sum(r["event"] == "purposeguard.violation" for r in recs)
    dropped = sum(r["count"] for r in recs if r["event"] == DROPPED_EVENT)  # type: ignore[misc]
    assert written + dropped == 200


def test_unserializable_and_reserved_records_are_replaced_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    log = AuditLog(path, key=KEY)
    log.emit({"event": "purposeguard.violation", "value": object()})
    log.emit({"event": "purposeguard.violation", "x": float("nan")})
    log.emit({"event": HEADER_EVENT, "sig": None})
    log.close()
    recs = [r for r in records_of(path) if r["event"] == UNSERIALIZABLE_EVENT]
    assert len(recs) == 3
    assert "object at" not in path.read_text()  # no repr of a value ever reaches the log
    assert verify_log([str(path)], key=KEY, expect_sealed=True).exit_code() == 0


def test_flush_close_and_emit_after_close_are_safe(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "v.jsonl", key=KEY)
    assert log.flush(1)  # nothing queued, no thread yet
    log.emit(violation())
    assert log.flush(5)
    log.close()
    log.close()
    log.emit(violation())  # counted as dropped, never raises
    assert log.flush(1)


def test_io_failures_never_reach_the_caller(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    log = AuditLog(blocker / "v.jsonl", key=KEY)
    log.emit(violation())
    log.flush(5)
    log.close()


def test_a_restarted_writer_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    for run in range(3):
        log = AuditLog(path, key=KEY, checkpoint_every=3)
        for i in range(4):
            log.emit(violation(run * 10 + i))
        log.close()
    result = verify_log(files_of(path), key=KEY, expect_sealed=True, expect_genesis=True)
    assert (result.failure, result.exit_code()) == (None, 0)
    assert sum(r["event"] == "purposeguard.violation" for r in records_of(path)) == 12


def test_a_torn_tail_is_kept_and_the_writer_continues_in_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    log = AuditLog(path, key=KEY)
    log.emit(violation(1))
    log.close()
    with open(path, "ab") as f:
        f.write(b'{"event":"purposeguard.violation","seq":')
    log = AuditLog(path, key=KEY)
    log.emit(violation(2))
    log.close()
    names = files_of(path)
    assert len(names) == 2
    result = verify_log(names, key=KEY, expect_sealed=True, expect_genesis=True)
    assert (result.failure, len(result.torn_tails)) == (None, 1)
    assert result.exit_code() == 0
    assert result.exit_code(strict=True) == 1


def test_a_crash_between_rotation_and_header_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    log = AuditLog(path, key=KEY)
    log.emit(violation(1))
    log.close()
    path.rename(tmp_path / "v.jsonl.1")
    path.write_bytes(b"")  # renamed and created, then killed before the header was written
    log = AuditLog(path, key=KEY)
    log.emit(violation(2))
    log.close()
    result = verify_log(files_of(path), key=KEY, expect_sealed=True, expect_genesis=True)
    assert (result.failure, result.exit_code()) == (None, 0)


def test_a_forked_child_writes_its_own_records_only(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    log = AuditLog(path, key=KEY)
    log.emit(violation(0))
    assert log.flush(5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            log.emit(violation(100))
            log.close()
        finally:
            os._exit(0)
    log.emit(violation(1))
    assert os.waitpid(pid, 0)[1] == 0
    log.close()
    seen = sorted(r["i"] for r in records_of(path) if r["event"] == "purposeguard.violation")  # type: ignore[type-var]
    assert seen == [0, 1, 100]
    assert verify_log(files_of(path), key=KEY, expect_sealed=True).exit_code() == 0


_WRITER = textwrap.dedent(
    """
    import sys, time
    from purposeguard.sinks.audit import AuditLog
    log = AuditLog(sys.argv[1], key=b"@KEY@", max_bytes=int(sys.argv[3]), checkpoint_every=7)
    for i in range(int(sys.argv[2])):
        log.emit({"event": "purposeguard.violation", "i": i, "pid": sys.argv[4]})
        if i % 50 == 49:
            log.flush()
            print(i, flush=True)
    """
).replace("@KEY@", KEY.decode())


def _writer(path: Path, n: int, max_bytes: int, tag: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(n), str(max_bytes), tag],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_processes_sharing_one_path_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    procs = [_writer(path, 300, 8000, str(k)) for k in range(3)]
    for proc in procs:
        proc.communicate(timeout=60)
        assert proc.returncode == 0  # exit flushes: nothing called close()
    result = verify_log(files_of(path), key=KEY, expect_sealed=True, expect_genesis=True)
    assert (result.failure, result.exit_code()) == (None, 0)
    assert sum(r["event"] == "purposeguard.violation" for r in records_of(path)) == 900


def test_kill_9_loses_at_most_the_batch_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    proc = _writer(path, 10**9, 20_000, "k")
    assert proc.stdout is not None
    flushed = -1
    deadline = time.monotonic() + 30
    while flushed < 1000 and time.monotonic() < deadline:
        flushed = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()

    result = verify_log(files_of(path), key=KEY, expect_genesis=True)
    assert (result.failure, result.exit_code()) == (None, 0)
    seen = {r["i"] for r in records_of(path) if r["event"] == "purposeguard.violation"}
    assert set(range(flushed + 1)) <= seen  # everything flushed before the kill survived

    log = AuditLog(path, key=KEY)  # a restart continues the chain
    log.emit(violation(-1))
    log.close()
    result = verify_log(files_of(path), key=KEY, expect_sealed=True, expect_genesis=True)
    assert (result.failure, result.exit_code()) == (None, 0)
