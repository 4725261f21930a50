"""Durations and UTC time: the one duration parser, timestamp form and clock of the package.

A duration is either short (``30d``, ``12h``, ``3y``: a whole number and one unit ``s``, ``m``,
``h``, ``d``, ``w`` or ``y``) or ISO 8601 (``P3Y``, ``P30D``, ``PT12H``, ``P1Y2M3DT4H5M6S``, the
form pydantic dumps a ``timedelta`` in). Calendar units have fixed lengths, so that a duration
means the same span whenever it is read: a year is 365 days and a month 30 days.

Timestamps are UTC ISO 8601 with microseconds and ``Z``, fixed width
(``2024-09-01T10:00:00.123456Z``), so that text order is time order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = [
    "epoch_us",
    "format_ts",
    "now_iso",
    "now_us",
    "parse_duration",
    "parse_ts",
    "use_clock",
]

_DAY: Final = 86_400
_SHORT = re.compile(r"([0-9]+)([smhdwy])\Z")
_SHORT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": _DAY, "w": 7 * _DAY, "y": 365 * _DAY}
# P[nY][nM][nW][nD][T[nH][nM][nS]], at least one part, and at least one after a T; only the
# seconds may have a fraction (pydantic writes microseconds as one).
_ISO = re.compile(
    r"P(?!\Z)(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)W)?(?:([0-9]+)D)?"
    r"(?:T(?!\Z)(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)(?:\.([0-9]{1,6}))?S)?)?\Z"
)
_ISO_SECONDS: Final = (365 * _DAY, 30 * _DAY, 7 * _DAY, _DAY, 3600, 60, 1)
_MAX_TEXT: Final = 64


def parse_duration(value: object, *, allow_zero: bool = False) -> timedelta:
    """A positive :class:`~datetime.timedelta` from a short or ISO 8601 duration (see the module
    docstring); a ``timedelta`` passes through. ``allow_zero`` also accepts a zero duration (an
    age such as ``--until 0m``).

    Raises :class:`ValueError` saying what a duration looks like; the message never repeats the
    value.
    """
    span: timedelta | None
    if isinstance(value, timedelta):
        span = value
    elif isinstance(value, str) and len(value) <= _MAX_TEXT:
        span = _parse_text(value)
    else:
        span = None
    if span is None:
        raise ValueError(
            "a duration is a whole number and a unit s, m, h, d, w or y, such as '3y', "
            "or ISO 8601, such as 'P3Y' or 'PT12H'"
        )
    if span < timedelta(0) or (span == timedelta(0) and not allow_zero):
        raise ValueError("a duration must be positive")
    return span


def _parse_text(text: str) -> timedelta | None:
    sign = -1 if text.startswith("-") else 1  # pydantic writes a negative timedelta as -P1D
    text = text.removeprefix("-")
    try:
        short = _SHORT.match(text)
        if short is not None:
            return sign * timedelta(seconds=int(short[1]) * _SHORT_SECONDS[short[2]])
        iso = _ISO.match(text)
        if iso is None:
            return None
        *parts, fraction = iso.groups()
        seconds = sum(int(n) * unit for n, unit in zip(parts, _ISO_SECONDS, strict=True) if n)
        micros = int(fraction.ljust(6, "0")) if fraction else 0
        return sign * timedelta(seconds=seconds, microseconds=micros)
    except OverflowError:
        raise ValueError("a duration must be shorter than 999,999,999 days") from None


def format_ts(at: datetime) -> str:
    """``at`` in the fixed-width UTC form; :class:`ValueError` if it is naive."""
    if at.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    """An aware UTC datetime from ISO 8601 text (the form :func:`format_ts` writes, or any other
    that :meth:`datetime.fromisoformat` reads); naive text means UTC. :class:`ValueError` else."""
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# (whole second, its "YYYY-MM-DDTHH:MM:SS" text), replaced as one tuple so threads never see
# one second's number with another's text
_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def now_iso() -> str:
    """Now in the fixed-width UTC form; the date and time are formatted once per second, since
    events and audit records ask for it at every record."""
    global _second
    whole, nanos = divmod(time.time_ns(), 1_000_000_000)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{nanos // 1000:06d}Z"


#: the clock retention is measured with, when a test replaced it (``use_clock``)
_clock: list[Callable[[], int] | None] = [None]


def now_us() -> int:
    """Now as microseconds since the Unix epoch (UTC): the clock retention is measured with."""
    clock = _clock[0]
    return time.time_ns() // 1000 if clock is None else clock()


def use_clock(clock: Callable[[], int] | None) -> Callable[[], int] | None:
    """Measure retention with ``clock`` (microseconds since the epoch) from now on, or with the
    system clock again for None; returns the clock it replaces. For tests
    (``pg.testing.retention_clock``)."""
    previous, _clock[0] = _clock[0], clock
    return previous


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def epoch_us(value: object) -> int | None:
    """A timezone-aware datetime as microseconds since the Unix epoch; None for anything else
    (a naive datetime names no instant)."""
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return (value - _EPOCH) // _MICROSECOND
    return None
