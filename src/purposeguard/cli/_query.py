"""Filtering violation records and aggregating them, in memory bounded by distinct keys.

A storm summary record (``purposeguard.violation_summary``) stands for ``count`` violations, and is
counted that many times everywhere.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from purposeguard import _time

__all__ = [
    "SUMMARY_EVENT",
    "VIOLATION_EVENT",
    "Filters",
    "Summary",
    "is_violation",
    "parse_time_arg",
    "parse_ts",
    "weight",
]

VIOLATION_EVENT = "purposeguard.violation"
SUMMARY_EVENT = "purposeguard.violation_summary"
_VIOLATIONS = frozenset({VIOLATION_EVENT, SUMMARY_EVENT})
MAX_KEYS = 10_000
"""Distinct values kept per counter; the rest are counted under ``(other)`` so memory stays flat."""


def is_violation(rec: Mapping[str, object]) -> bool:
    """True for a violation record or a storm summary of violations."""
    return rec.get("event") in _VIOLATIONS


def weight(rec: Mapping[str, object]) -> int:
    """How many violations ``rec`` stands for: its ``count`` for a storm summary, else 1."""
    if rec.get("event") == SUMMARY_EVENT:
        count = rec.get("count")
        if type(count) is int and count > 0:
            return count
    return 1


def parse_ts(value: object) -> _dt.datetime | None:
    """An aware UTC datetime from an ISO 8601 string (naive means UTC), or None: a record's
    ``ts`` may be anything."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return _time.parse_ts(value)
    except ValueError:
        return None


def parse_time_arg(value: str, now: _dt.datetime | None = None) -> _dt.datetime:
    """``--since``/``--until``: an ISO 8601 time, or an age that far back from ``now``: a
    duration as a policy writes it (``30m``, ``2h``, ``7d``, ``P1W``); ValueError else."""
    text = value.strip()
    try:
        age = _time.parse_duration(text, allow_zero=True)
    except ValueError:
        ts = parse_ts(text)
        if ts is None:
            raise ValueError(
                f"{value!r} is neither ISO 8601 (2024-09-01T12:00Z) nor an age like 2h"
            ) from None
        return ts
    try:
        return (now or _dt.datetime.now(_dt.UTC)) - age
    except OverflowError:
        raise ValueError(f"{value!r} reaches back before the year 1") from None


def _text(rec: Mapping[str, object], key: str) -> str | None:
    value = rec.get(key)
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Filters:
    """The ``violations`` filters; each given one must match (values within one are OR-ed).

    ``purposes`` match the purpose and its descendants; ``fields`` and ``accessors`` are
    shell-style globs; the rest match exactly.
    """

    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    purposes: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    accessors: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    trace_ids: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()

    def match(self, rec: Mapping[str, object]) -> bool:
        """Whether the violation record ``rec`` passes every filter."""
        if self.since is not None or self.until is not None:
            ts = parse_ts(rec.get("ts"))
            if ts is None:
                return False
            if (self.since is not None and ts < self.since) or (
                self.until is not None and ts > self.until
            ):
                return False
        if self.purposes:
            purpose = _text(rec, "purpose")
            if purpose is None or not any(
                purpose == p or purpose.startswith(p + ".") for p in self.purposes
            ):
                return False
        for wanted, key in ((self.fields, "field"), (self.accessors, "accessor")):
            if wanted:
                value = _text(rec, key)
                if value is None or not any(fnmatch.fnmatchcase(value, g) for g in wanted):
                    return False
        for wanted, key in (
            (self.modes, "mode"),
            (self.trace_ids, "trace_id"),
            (self.subjects, "subject"),
        ):
            if wanted and _text(rec, key) not in wanted:
                return False
        return True


def _bump(counter: Counter[str], key: object, n: int) -> None:
    name = key if isinstance(key, str) else "(none)" if key is None else str(key)[:200]
    if name not in counter and len(counter) >= MAX_KEYS:
        name = "(other)"
    counter[name] += n


@dataclass(slots=True)
class Summary:
    """Counts of violations by purpose, field, accessor, code location, mode, reason and hour."""

    latest_size: int = 50
    total: int = 0
    records: int = 0
    by_purpose: Counter[str] = field(default_factory=Counter)
    by_field: Counter[str] = field(default_factory=Counter)
    by_accessor: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    by_mode: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    by_hour: Counter[str] = field(default_factory=Counter)
    other_events: Counter[str] = field(default_factory=Counter)
    latest: deque[Mapping[str, object]] = field(default_factory=deque)
    _lo: str | None = None
    _hi: str | None = None
    _times: list[_dt.datetime] = field(default_factory=list)

    def add(self, rec: Mapping[str, object]) -> None:
        """Count one record; non-violation events are tallied in ``other_events`` only."""
        if not is_violation(rec):
            _bump(self.other_events, rec.get("event"), 1)
            return
        n = weight(rec)
        self.total += n
        self.records += 1
        _bump(self.by_purpose, rec.get("purpose"), n)
        if rec.get("field") is not None:
            _bump(self.by_field, rec.get("field"), n)
        if rec.get("accessor") is not None:
            _bump(self.by_accessor, rec.get("accessor"), n)
        _bump(self.by_code, rec.get("code"), n)
        _bump(self.by_mode, rec.get("mode"), n)
        _bump(self.by_reason, rec.get("reason"), n)
        self._add_time(rec.get("ts"), n)
        self.latest.append(rec)
        if len(self.latest) > self.latest_size:
            self.latest.popleft()

    def _add_time(self, raw: object, n: int) -> None:
        # The writer's own form ("2024-09-01T10:00:00.123456Z") is bucketed and ordered by
        # slicing, without parsing: logs are long and this runs for every record.
        if isinstance(raw, str) and len(raw) >= 20 and raw[-1] == "Z" and raw[10] == "T":
            _bump(self.by_hour, raw[:13] + ":00Z", n)
            key = raw[:19]
            if self._lo is None or key < self._lo:
                self._lo = key if parse_ts(key) else self._lo
            if self._hi is None or key > self._hi:
                self._hi = key if parse_ts(key) else self._hi
            return
        ts = parse_ts(raw)
        if ts is None:
            return
        _bump(self.by_hour, ts.strftime("%Y-%m-%dT%H:00Z"), n)
        self._times.extend((ts, ts))
        self._times[:] = [min(self._times), max(self._times)]

    @property
    def first_ts(self) -> _dt.datetime | None:
        """The earliest violation time seen."""
        times = [*self._times, *(parse_ts(k) for k in (self._lo,) if k)]
        return min((t for t in times if t), default=None)

    @property
    def last_ts(self) -> _dt.datetime | None:
        """The latest violation time seen."""
        times = [*self._times, *(parse_ts(k) for k in (self._hi,) if k)]
        return max((t for t in times if t), default=None)

    def add_all(self, records: Iterable[Mapping[str, object]]) -> Summary:
        """Count every record; returns self."""
        for rec in records:
            self.add(rec)
        return self

    def timeline(self, max_buckets: int = 2000) -> list[tuple[str, int]]:
        """Counts over time with empty buckets filled: hourly up to 3 days, else daily."""
        valid: dict[str, int] = {}
        for key, n in self.by_hour.items():
            try:
                _dt.datetime.strptime(key, "%Y-%m-%dT%H:00Z")
            except ValueError:
                continue  # "(other)", or a malformed time that only looked like one
            valid[key] = n
        if not valid:
            return []
        hours = sorted(valid)
        start = _dt.datetime.strptime(hours[0], "%Y-%m-%dT%H:00Z")
        end = _dt.datetime.strptime(hours[-1], "%Y-%m-%dT%H:00Z")
        daily = end - start > _dt.timedelta(days=3)
        buckets: Counter[str] = Counter()
        for key, n in valid.items():
            buckets[key[:10] if daily else key] += n
        step = _dt.timedelta(days=1 if daily else 0, hours=0 if daily else 1)
        if (end - start) / step > max_buckets:
            return sorted(buckets.items())
        out, t = [], start.replace(hour=0) if daily else start
        while t <= end:
            key = t.strftime("%Y-%m-%d") if daily else t.strftime("%Y-%m-%dT%H:00Z")
            out.append((key, buckets.get(key, 0)))
            t += step
        return out

    def to_json(self, top: int = 10) -> dict[str, object]:
        """A JSON-able summary with the ``top`` entries of each counter."""
        return {
            "violations": self.total,
            "records": self.records,
            "first_ts": self.first_ts.isoformat() if self.first_ts else None,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
            "by_purpose": dict(self.by_purpose.most_common(top)),
            "by_field": dict(self.by_field.most_common(top)),
            "by_accessor": dict(self.by_accessor.most_common(top)),
            "by_code": dict(self.by_code.most_common(top)),
            "by_mode": dict(self.by_mode.most_common(top)),
            "by_reason": dict(self.by_reason.most_common(top)),
            "over_time": dict(self.timeline()),
            "other_events": dict(self.other_events.most_common(top)),
        }
