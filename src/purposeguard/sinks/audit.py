"""Tamper-evident audit log: hash-chained JSON lines with signed headers and checkpoints.

Every line is the canonical JSON of one record (sorted keys, no whitespace, ASCII only) with a
``seq`` that grows by one across all files and a ``prev_hash``: the SHA-256 of the previous line's
bytes. Each file starts with a signed header; every ``checkpoint_every`` records, and when the log
is closed, a checkpoint signs the chain so far with HMAC-SHA256. See ``docs/audit-log.md``.

Several processes (a pre-fork server's workers) may share one path: each batch is written under an
exclusive ``flock`` on a hidden lock file, after re-reading the chain's tail if another process
wrote in between, so the chain stays a single line of records.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import hashlib
import hmac
import json
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import structlog

from .._time import now_iso as _now

try:  # POSIX only; without it processes sharing a path are not serialized (documented).
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "AUDIT_KEY_ENV",
    "AUDIT_SCHEMA",
    "CHECKPOINT_EVENT",
    "DROPPED_EVENT",
    "GENESIS_HASH",
    "HEADER_EVENT",
    "UNSERIALIZABLE_EVENT",
    "AuditLog",
    "canonical_json",
    "key_id",
    "line_hash",
    "resolve_key",
    "sign",
]

AUDIT_KEY_ENV = "PURPOSEGUARD_AUDIT_KEY"
"""Environment variable holding the HMAC key (its UTF-8 bytes) when none is passed."""
AUDIT_SCHEMA = "purposeguard.audit/1"
HEADER_EVENT = "purposeguard.audit_header"
CHECKPOINT_EVENT = "purposeguard.audit_checkpoint"
DROPPED_EVENT = "purposeguard.dropped"
UNSERIALIZABLE_EVENT = "purposeguard.audit_unserializable"
GENESIS_HASH = "0" * 64
"""``prev_hash`` of the very first record (seq 0) of a log."""

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_RESERVED_EVENTS = frozenset({HEADER_EVENT, CHECKPOINT_EVENT})
_MAX_BATCH = 1024
_TAIL_CHUNK = 1 << 16
_TAIL_MAX = 1 << 24
_logger = structlog.get_logger("purposeguard")
_LIVE: weakref.WeakSet[AuditLog] = weakref.WeakSet()


def canonical_json(obj: object) -> bytes:
    """The exact bytes of a record's line (without the newline); raises on non-JSON values."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def line_hash(line: bytes) -> str:
    """SHA-256 hex digest of one line's bytes: the next record's ``prev_hash``."""
    return hashlib.sha256(line).hexdigest()


def key_id(key: bytes) -> str:
    """A short public fingerprint of ``key``, so a verifier can tell a wrong key from a forgery."""
    return hashlib.sha256(b"purposeguard-audit-kid\0" + key).hexdigest()[:16]


def sign(key: bytes, record: dict[str, object]) -> str:
    """HMAC-SHA256 over the canonical JSON of ``record`` without its ``sig`` key."""
    body = {k: v for k, v in record.items() if k != "sig"}
    return hmac.new(key, canonical_json(body), hashlib.sha256).hexdigest()


def resolve_key(key: bytes | None) -> bytes | None:
    """``key`` if given, else the UTF-8 bytes of ``$PURPOSEGUARD_AUDIT_KEY``, else None."""
    if key:
        return key
    env = os.environ.get(AUDIT_KEY_ENV)
    return env.encode("utf-8") if env else None


class _Chain:
    """Where the chain stands in the file this process has open."""

    def __init__(self, fd: int, ino: int, size: int, seq: int, last: str, every: int) -> None:
        self.fd, self.ino, self.size = fd, ino, size
        self.next_seq, self.last_hash, self.checkpoint_every = seq, last, every


class AuditLog:
    """A sink writing records to a hash-chained, rotated, fsynced JSON-lines file.

    Args:
        path: the active file; rotated files are ``path.1``, ``path.2``, ... (1 is the oldest).
        key: HMAC key for headers and checkpoints; default ``$PURPOSEGUARD_AUDIT_KEY``. Without
            any key the chain is still written but ``sig`` is null and ``verify`` refuses the log
            unless given ``--allow-unsigned``.
        max_bytes: rotate before a batch once the active file has reached this size.
        checkpoint_every: a signed checkpoint takes every seq that is a multiple of this.
        buffer_size: records queued in memory before ``when_full`` applies.
        when_full: ``"block"`` waits up to ``block_timeout`` seconds, then drops; ``"drop"`` drops
            at once. Drops are counted and written as a ``purposeguard.dropped`` record.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        max_bytes: int = 64 * 1024 * 1024,
        checkpoint_every: int = 1000,
        buffer_size: int = 10_000,
        when_full: Literal["block", "drop"] = "block",
        block_timeout: float = 1.0,
    ) -> None:
        if when_full not in ("block", "drop"):
            raise ValueError(f"when_full must be 'block' or 'drop', not {when_full!r}")
        if checkpoint_every < 2 or buffer_size < 1 or max_bytes < 1:
            raise ValueError("checkpoint_every must be >= 2, buffer_size and max_bytes >= 1")
        self.path = Path(path)
        self._lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._key = resolve_key(key)
        self._kid = key_id(self._key) if self._key else None
        self._max_bytes, self._every = max_bytes, checkpoint_every
        self._buffer_size, self._when_full, self._block_timeout = (
            buffer_size,
            when_full,
            block_timeout,
        )
        self._init_state()
        _LIVE.add(self)

    def _init_state(self) -> None:
        # Called again in a forked child: nothing of the parent's threads, locks or fds is reused.
        self._mutex = threading.Lock()
        self._not_empty = threading.Condition(self._mutex)
        self._progress = threading.Condition(self._mutex)
        self._queue: collections.deque[dict[str, object]] = collections.deque()
        self._enqueued = self._done = self._dropped = 0
        self._stopping = self._closed = False
        self._thread: threading.Thread | None = None
        self._chain: _Chain | None = None
        self._lock_fd: int | None = None

    # -- caller side -------------------------------------------------------------------------

    def emit(self, record: dict[str, object]) -> None:
        """Queue ``record`` for writing; never raises for I/O trouble, drops are counted."""
        with self._mutex:
            if self._closed or self._stopping:
                self._dropped += 1
                return
            if len(self._queue) >= self._buffer_size and not self._wait_for_room():
                self._dropped += 1
                self._not_empty.notify()
                return
            self._queue.append(record)
            self._enqueued += 1
            if self._thread is None:
                self._start_writer()
            self._not_empty.notify()

    def _wait_for_room(self) -> bool:
        writer = self._thread
        if self._when_full == "drop" or (
            writer is not None and writer.ident == threading.get_ident()
        ):
            return False  # the writer thread must never wait on itself
        return (
            self._progress.wait_for(
                lambda: len(self._queue) < self._buffer_size or self._stopping, self._block_timeout
            )
            and not self._stopping
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written and fsynced; False on timeout."""
        with self._mutex:
            if self._thread is None:
                return not self._queue
            target = self._enqueued
            self._not_empty.notify()
            thread = self._thread
            return (
                self._progress.wait_for(
                    lambda: (self._done >= target and not self._dropped) or not thread.is_alive(),
                    timeout,
                )
                and self._done >= target
            )

    def close(self) -> None:
        """Flush, write a final checkpoint and stop the writer thread. Idempotent."""
        with self._mutex:
            if self._closed:
                return
            self._stopping = True
            thread = self._thread
            self._not_empty.notify()
            self._progress.notify_all()
        if thread is not None:
            thread.join(timeout=30.0)
        with self._mutex:
            self._closed = True
            self._close_fds()

    def _start_writer(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"purposeguard-audit:{self.path.name}", daemon=True
        )
        self._thread.start()

    # -- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._mutex:
                self._not_empty.wait_for(
                    lambda: bool(self._queue) or self._dropped > 0 or self._stopping
                )
                n = min(len(self._queue), _MAX_BATCH)
                batch = [self._queue.popleft() for _ in range(n)]
                dropped, self._dropped = self._dropped, 0
                final = self._stopping and not self._queue
                self._progress.notify_all()  # room in the buffer for blocked emitters
            try:
                self._write_batch(batch, dropped, final=final)
            except Exception as exc:  # a sink failure never reaches the caller
                _logger.error("purposeguard.audit_log_error", path=str(self.path), error=repr(exc))
            with self._mutex:
                self._done += n
                self._progress.notify_all()
                if final:
                    return

    def _write_batch(self, batch: list[dict[str, object]], dropped: int, *, final: bool) -> None:
        if not batch and not dropped and not (final and self._chain is not None):
            return
        with self._file_lock():
            chain = self._sync()
            lines: list[bytes] = []
            if chain.size >= self._max_bytes or chain.size == 0:
                chain = self._rotate(chain, lines)
            if dropped:
                self._append(chain, lines, {"event": DROPPED_EVENT, "count": dropped, "ts": _now()})
            for record in batch:
                self._append(chain, lines, record)
            if final:
                self._append_signed(chain, lines, CHECKPOINT_EVENT, final=True)
            self._write(chain, b"".join(lines), lost=len(batch))

    def _append(self, chain: _Chain, lines: list[bytes], record: dict[str, object]) -> None:
        if chain.next_seq > 0 and chain.next_seq % chain.checkpoint_every == 0:
            self._append_signed(chain, lines, CHECKPOINT_EVENT)
        rec = dict(record)
        rec["seq"], rec["prev_hash"] = chain.next_seq, chain.last_hash
        try:
            if rec.get("event") in _RESERVED_EVENTS:
                raise ValueError("reserved event name")
            line = canonical_json(rec)
        except (TypeError, ValueError) as exc:
            event = record.get("event")
            _logger.error("purposeguard.audit_unserializable", event_name=str(event)[:200])
            line = canonical_json(
                {
                    "event": UNSERIALIZABLE_EVENT,
                    "original_event": event if isinstance(event, str) else None,
                    "error": type(exc).__name__,
                    "ts": _now(),
                    "seq": chain.next_seq,
                    "prev_hash": chain.last_hash,
                }
            )
        self._push(chain, lines, line)

    def _append_signed(
        self, chain: _Chain, lines: list[bytes], event: str, **extra: object
    ) -> None:
        rec: dict[str, object] = {
            "event": event,
            "schema": AUDIT_SCHEMA,
            "ts": _now(),
            "seq": chain.next_seq,
            "prev_hash": chain.last_hash,
            "kid": self._kid,
            **extra,
        }
        rec["sig"] = sign(self._key, rec) if self._key else None
        self._push(chain, lines, canonical_json(rec))

    @staticmethod
    def _push(chain: _Chain, lines: list[bytes], line: bytes) -> None:
        lines.append(line + b"\n")
        chain.next_seq += 1
        chain.last_hash = line_hash(line)

    def _write(self, chain: _Chain, data: bytes, *, lost: int) -> None:
        start = chain.size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(chain.fd, view) :]
            (getattr(os, "fdatasync", None) or os.fsync)(chain.fd)
            chain.size = start + len(data)
        except OSError:
            # A partial line would break every later append: cut it away, count the batch lost.
            with contextlib.suppress(OSError):
                os.ftruncate(chain.fd, start)
            with contextlib.suppress(OSError):
                os.close(chain.fd)
            self._chain = None
            with self._mutex:
                self._dropped += lost
            raise

    # -- files -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        if self._lock_fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o600)
        if fcntl is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _sync(self) -> _Chain:
        """The chain state of the active file, re-read if another process changed it."""
        chain = self._chain
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if (
            chain is not None
            and st is not None
            and (st.st_ino, st.st_size) == (chain.ino, chain.size)
        ):
            return chain
        if chain is not None:
            with contextlib.suppress(OSError):
                os.close(chain.fd)
        self._chain = None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _CLOEXEC, 0o600)
        st = os.fstat(fd)
        newest = self._rotated()
        if st.st_size == 0 and newest:
            # An empty active file after a rotation (a crash between rename and header): the
            # chain goes on from the newest rotated file, torn or not.
            older = self.path.with_name(f"{self.path.name}.{newest}")
            seq, last, _ = _read_tail(older, older.stat().st_size, self._every)
            seq = 0 if seq == -1 else -seq - 1 if seq < 0 else seq
            self._chain = _Chain(fd, st.st_ino, 0, seq, last, self._every)
            return self._chain
        seq, last, every = _read_tail(self.path, st.st_size, self._every)
        self._chain = _Chain(fd, st.st_ino, st.st_size, seq, last, every)
        if seq < 0:  # torn or unreadable tail: keep it as evidence, continue in a new file
            self._chain.size = max(self._max_bytes, 1)
            self._chain.next_seq = -seq - 1
        return self._chain

    def _rotated(self) -> int:
        """The highest N of the rotated files ``path.N``, or 0."""
        suffixes = (p.name.rsplit(".", 1)[1] for p in self.path.parent.glob(self.path.name + ".*"))
        return max((int(x) for x in suffixes if x.isdigit()), default=0)

    def _rotate(self, chain: _Chain, lines: list[bytes]) -> _Chain:
        if chain.size > 0:
            os.rename(self.path, self.path.with_name(f"{self.path.name}.{self._rotated() + 1}"))
            os.close(chain.fd)
            fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o600
            )
            self._fsync_dir()
            chain = _Chain(fd, os.fstat(fd).st_ino, 0, chain.next_seq, chain.last_hash, self._every)
            self._chain = chain
        chain.checkpoint_every = self._every
        self._append_signed(
            chain, lines, HEADER_EVENT, checkpoint_every=self._every, pid=os.getpid()
        )
        return chain

    def _fsync_dir(self) -> None:
        with contextlib.suppress(OSError):
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _close_fds(self) -> None:
        for fd in (self._chain.fd if self._chain else None, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._chain, self._lock_fd = None, None

    def _after_fork_in_child(self) -> None:
        self._close_fds()
        self._init_state()


def _read_tail(path: Path, size: int, default_every: int) -> tuple[int, str, int]:
    """(next seq, last hash, checkpoint_every) of an existing file.

    A negative seq ``-(n + 1)`` means the tail is torn or unreadable and the chain resumes at
    ``n`` in a new file; the previous hash is then that of the last complete record.
    """
    if size == 0:
        return 0, GENESIS_HASH, default_every
    with open(path, "rb") as f:
        head = f.readline(_TAIL_CHUNK)
        every = default_every
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            header = json.loads(head)
            if header.get("event") == HEADER_EVENT:
                every = int(header["checkpoint_every"])
        chunk = _TAIL_CHUNK
        while True:
            start = max(0, size - chunk)
            f.seek(start)
            data = f.read(size - start)
            torn = not data.endswith(b"\n")
            body = data[: data.rfind(b"\n") + 1] if torn else data
            lines = body.rstrip(b"\n").split(b"\n")
            if len(lines) >= 2 or start == 0:
                break
            if chunk >= _TAIL_MAX:
                return -1, GENESIS_HASH, every  # hopeless: a visible gap is better than a guess
            chunk *= 4
    last = lines[-1]
    try:
        seq = int(json.loads(last)["seq"])
    except (ValueError, TypeError, KeyError):
        return -1, GENESIS_HASH, every
    if torn:
        return -(seq + 2), line_hash(last), every
    return seq + 1, line_hash(last), every


def _close_all() -> None:
    # The core emitter flushes into its configured logs before this runs (it registers its own
    # exit hook again whenever its sinks change, so that it runs first).
    for log in list(_LIVE):
        log.close()


def _after_fork_in_child() -> None:
    for log in list(_LIVE):
        log._after_fork_in_child()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
