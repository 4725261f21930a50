"""Reading audit logs and structlog JSON output without ever crashing, in flat memory.

Lines are read with a length cap (a 1 GB line costs at most the cap in memory), and every line that
is not a JSON object is skipped and counted by kind, so the CLI can report it on stderr. Nothing in
this module needs click.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "MAX_LINE_BYTES",
    "Line",
    "ReadStats",
    "Readable",
    "iter_lines",
    "iter_records",
    "open_source",
    "parse_line",
]

MAX_LINE_BYTES = 1 << 20
"""Lines longer than this are skipped unread; audit records are a few hundred bytes."""

_BOM = b"\xef\xbb\xbf"


class Readable(Protocol):
    """What reading needs of a stream: files, gzip files and stdin all have it."""

    def readline(self, size: int = -1, /) -> bytes: ...


@dataclass(slots=True)
class ReadStats:
    """What reading skipped, by kind, and where a file ended on a torn (unterminated) line."""

    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    torn: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Human-readable lines for stderr, empty when nothing was skipped."""
        out = [f"skipped {n} line(s): {kind}" for kind, n in sorted(self.skipped.items())]
        out += [f"{where}: last line is incomplete (torn write?)" for where in self.torn]
        return out


@dataclass(frozen=True, slots=True)
class Line:
    """One physical line: its bytes (without the newline), or None when over the cap."""

    source: str
    lineno: int
    data: bytes | None
    terminated: bool


@contextlib.contextmanager
def open_source(name: str) -> Iterator[Readable]:
    """Open ``name`` for binary reading: ``-`` is stdin, ``*.gz`` is decompressed."""
    if name == "-":
        yield sys.stdin.buffer
    elif name.endswith(".gz"):
        with gzip.open(name, "rb") as f:
            yield f
    else:
        with open(name, "rb") as f:
            yield f


def iter_lines(stream: Readable, source: str, cap: int = MAX_LINE_BYTES) -> Iterator[Line]:
    """Physical lines of ``stream``; a line longer than ``cap`` is drained and yielded as None."""
    lineno = 0
    while True:
        chunk = stream.readline(cap + 1)
        if not chunk:
            return
        lineno += 1
        if len(chunk) > cap and not chunk.endswith(b"\n"):
            # Drain the rest of the giant line without holding it.
            while chunk and not chunk.endswith(b"\n"):
                chunk = stream.readline(cap)
            yield Line(source, lineno, None, chunk.endswith(b"\n"))
            continue
        terminated = chunk.endswith(b"\n")
        yield Line(source, lineno, chunk[:-1] if terminated else chunk, terminated)


def parse_line(data: bytes, stats: ReadStats) -> dict[str, object] | None:
    """The JSON object on one line, or None (counted in ``stats``) for anything else."""
    if data.endswith(b"\r"):
        data = data[:-1]
    if data.startswith(_BOM):
        data = data[3:]
    if b"\0" in data:
        # Crashed writers and preallocating filesystems leave runs of NULs: skip them.
        data = data.strip(b"\0")
        stats.skipped["NUL padding"] += 1
        if b"\0" in data:
            return None
    if not data.strip():
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        stats.skipped["invalid UTF-8"] += 1
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        stats.skipped["not JSON"] += 1
        return None
    if not isinstance(obj, dict):
        stats.skipped["not a JSON object"] += 1
        return None
    return normalize(obj)


def normalize(obj: dict[str, object]) -> dict[str, object]:
    """Accept structlog output too: ``msg`` for ``event``, ``timestamp`` for ``ts``."""
    if not isinstance(obj.get("event"), str) and isinstance(obj.get("msg"), str):
        obj["event"] = obj["msg"]
    if "ts" not in obj and isinstance(obj.get("timestamp"), str):
        obj["ts"] = obj["timestamp"]
    return obj


def iter_records(
    sources: Iterable[str], stats: ReadStats, cap: int = MAX_LINE_BYTES
) -> Iterator[dict[str, object]]:
    """Every JSON object in ``sources`` in order; the rest is counted in ``stats``.

    Raises OSError (and gzip.BadGzipFile) for a source that cannot be opened or read.
    """
    for source in sources:
        with open_source(source) as stream:
            for line in iter_lines(stream, source, cap):
                if line.data is None:
                    stats.skipped[f"longer than {cap} bytes"] += 1
                    continue
                obj = parse_line(line.data, stats)
                if obj is None:
                    if not line.terminated and line.data.strip(b"\0 \r\t"):
                        stats.torn.append(f"{source}:{line.lineno}")
                    continue
                stats.records += 1
                yield obj
