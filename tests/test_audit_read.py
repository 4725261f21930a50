"""Reading logs never crashes, and filtering and counting understand storm summaries."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import tracemalloc
import types
from pathlib import Path

import pytest

from purposeguard.cli._query import Filters, Summary, parse_time_arg, parse_ts, weight
from purposeguard.cli._read import MAX_LINE_BYTES, ReadStats, iter_lines, iter_records
from purposeguard.cli._render import dump_json

V = {"event": "purposeguard.violation", "purpose": "marketing", "ts": "2024-09-01T10:00:00Z"}


def _line(**kw: object) -> bytes:
    return json.dumps({**V, **kw}).encode() + b"\n"


def test_every_kind_of_damage_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + _line(i=1)
        + _line(i=2)[:-1]
        + b"\r\n"
        + b"\xff\xfe not utf-8\n"
        + b"\0\0\0\0\0\0\n"
        + b"\0\0"
        + _line(i=3)
        + b"plain text\n"
        + b"[1, 2]\n"
        + b"x" * 5000
        + b"\n"
        + b"\n"
        + _line(i=4)
        + b'{"event": "purposeguard.viol'
    )
    stats = ReadStats()
    got = [r["i"] for r in iter_records([str(path)], stats, cap=4096)]
    assert got == [1, 2, 3, 4]
    assert stats.skipped["invalid UTF-8"] == 1
    assert stats.skipped["not JSON"] == 2  # "plain text" and the torn tail
    assert stats.skipped["not a JSON object"] == 1
    assert stats.skipped["longer than 4096 bytes"] == 1
    assert stats.skipped["NUL padding"] == 2
    assert stats.torn == [f"{path}:11"]
    assert any("torn" in p for p in stats.problems())


def test_a_giant_line_is_drained_in_bounded_pieces() -> None:
    class Counting(io.BytesIO):
        biggest = 0

        def readline(self, size: int | None = -1, /) -> bytes:
            chunk = super().readline(size)
            Counting.biggest = max(Counting.biggest, len(chunk))
            return chunk

    stream = Counting(b"a" * 3_000_000 + b"\n" + _line(i=1))
    lines = list(iter_lines(stream, "-", cap=1 << 16))
    assert lines[0].data is None
    assert json.loads(lines[1].data or b"")["i"] == 1
    assert Counting.biggest <= (1 << 16) + 1


def test_gzip_and_structlog_output_with_msg_instead_of_event(tmp_path: Path) -> None:
    path = tmp_path / "app.log.gz"
    structlog_line = {"msg": "purposeguard.violation", "timestamp": "2024-09-01T10:00:00Z", "i": 7}
    path.write_bytes(gzip.compress(json.dumps(structlog_line).encode() + b"\n"))
    recs = list(iter_records([str(path)], ReadStats()))
    assert recs[0]["event"] == "purposeguard.violation"
    assert recs[0]["ts"] == "2024-09-01T10:00:00Z"


def test_filters_match_purpose_descendants_globs_and_time() -> None:
    rec = {**V, "purpose": "recruitment.selection", "field": "hr.models.Applicant.email"}
    assert Filters(purposes=("recruitment",)).match(rec)
    assert not Filters(purposes=("recruit",)).match(rec)
    assert Filters(fields=("*.Applicant.*",)).match(rec)
    assert not Filters(accessors=("*",)).match(rec)
    assert not Filters(modes=("enforce",)).match(rec)
    since = dt.datetime(2024, 9, 1, 9, tzinfo=dt.UTC)
    assert Filters(since=since).match(rec)
    assert not Filters(since=since, until=since).match(rec)
    assert not Filters(since=since).match({**rec, "ts": "garbage"})


def test_time_arguments() -> None:
    now = dt.datetime(2024, 9, 2, tzinfo=dt.UTC)
    assert parse_time_arg("2h", now) == dt.datetime(2024, 9, 1, 22, tzinfo=dt.UTC)
    assert parse_time_arg("2024-09-01") == dt.datetime(2024, 9, 1, tzinfo=dt.UTC)
    assert parse_ts("2024-09-01T12:00:00+09:00") == dt.datetime(2024, 9, 1, 3, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="neither ISO"):
        parse_time_arg("yesterday")


def test_time_arguments_take_ages_as_a_policy_writes_durations() -> None:
    now = dt.datetime(2024, 9, 2, tzinfo=dt.UTC)
    week_ago = dt.datetime(2024, 8, 26, tzinfo=dt.UTC)
    assert [week_ago] * 4 == [parse_time_arg(age, now) for age in ("7d", "1w", "P7D", " P1W ")]
    assert parse_time_arg("0m", now) == now
    assert parse_time_arg("1y", now) == now - dt.timedelta(days=365)
    with pytest.raises(ValueError, match="before the year 1"):
        parse_time_arg("999999999d", now)


def test_storm_summaries_count_with_their_count() -> None:
    storm = {**V, "event": "purposeguard.violation_summary", "count": 500, "field": "f"}
    assert weight(storm) == 500
    assert weight({**storm, "count": "lots"}) == 1
    summary = Summary().add_all(
        [V, storm, {"event": "purposeguard.mode_change"}, {**V, "ts": "2024-09-01T12:30:00Z"}]
    )
    assert summary.total == 502
    assert summary.by_purpose == {"marketing": 502}
    assert summary.by_field == {"f": 500}
    assert summary.other_events == {"purposeguard.mode_change": 1}
    assert summary.timeline() == [
        ("2024-09-01T10:00Z", 501),
        ("2024-09-01T11:00Z", 0),
        ("2024-09-01T12:00Z", 1),
    ]


def test_distinct_keys_are_capped_so_memory_stays_flat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("purposeguard.cli._query.MAX_KEYS", 3)
    summary = Summary(latest_size=2).add_all({**V, "code": f"a.py:{i}"} for i in range(10))
    assert len(summary.by_code) == 4
    assert summary.by_code["(other)"] == 7
    assert len(summary.latest) == 2


def test_weird_values_never_break_counting() -> None:
    weird = {**V, "purpose": ["x"], "field": {"a": 1}, "ts": 12, "code": None, "count": -5}
    fake_ts = {**V, "ts": "abcdefghijTklmnopqrstZ"}
    summary = Summary().add_all(
        [weird, {**weird, "event": "purposeguard.violation_summary"}, fake_ts]
    )
    assert summary.total == 3
    assert summary.timeline() == []
    json.dumps(summary.to_json())


class _GiantLine(io.RawIOBase):
    """A stream holding one line of ``size`` bytes, then one record, without storing either."""

    def __init__(self, size: int, tail: bytes) -> None:
        self.left, self.tail = size, tail

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1, /) -> bytes:
        if self.left > 0:
            n = self.left if size is None or size < 0 else min(size, self.left)
            self.left -= n
            return b"a" * n if self.left else b"a" * (n - 1) + b"\n"
        tail, self.tail = self.tail, b""
        return tail


def test_a_1_gb_line_is_skipped_with_a_capped_read(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _GiantLine(1 << 30, _line(i=1))
    monkeypatch.setattr("sys.stdin", types.SimpleNamespace(buffer=stream))
    stats = ReadStats()
    tracemalloc.start()
    try:
        got = [r["i"] for r in iter_records(["-"], stats)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == [1]
    assert stats.skipped == {f"longer than {MAX_LINE_BYTES} bytes": 1}
    assert stream.left == 0  # drained to its end, never held
    assert peak < 4 * MAX_LINE_BYTES


def _peak_reading(path: Path, lines: int) -> int:
    with open(path, "wb") as f:
        for i in range(lines):
            f.write(_line(i=i, code=f"hr/views.py:{i % 50}", ts=f"2024-09-01T{i % 24:02d}:00:00Z"))
    filters = Filters(purposes=("marketing",))
    tracemalloc.start()
    try:
        summary = Summary()
        for rec in iter_records([str(path)], ReadStats()):  # what violations and summary do
            if filters.match(rec):
                dump_json(rec)
                summary.add(rec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.total == lines
    return peak


def test_memory_stays_flat_as_the_log_grows(tmp_path: Path) -> None:
    small = _peak_reading(tmp_path / "small.jsonl", 2_000)
    large = _peak_reading(tmp_path / "large.jsonl", 20_000)
    assert large < small * 1.25 + 64 * 1024, (small, large)
