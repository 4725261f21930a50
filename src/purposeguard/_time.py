"""Time: the UTC clock events and retention read. (Interim; merged with the duration parser.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

__all__ = ["epoch_us", "now_iso", "now_us", "use_clock"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_second: list[Any] = [None, ""]  # [whole second, its "YYYY-MM-DDTHH:MM:SS" text]


def now_iso() -> str:
    """UTC ISO 8601 with microseconds and ``Z``; the date part is formatted once per second."""
    now = time.time()
    whole = int(now)
    cached = _second
    if cached[0] != whole:
        cached[1] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cached[0] = whole
    return f"{cached[1]}.{int((now - whole) * 1_000_000):06d}Z"


#: the clock retention is measured with, when a test replaced it (``use_clock``)
_clock: list[Callable[[], int] | None] = [None]


def now_us() -> int:
    """The clock retention is measured with: microseconds since the Unix epoch (UTC)."""
    clock = _clock[0]
    return time.time_ns() // 1000 if clock is None else clock()


def use_clock(clock: Callable[[], int] | None) -> Callable[[], int] | None:
    """Measure retention with ``clock`` (microseconds since the epoch) from now on, or with the
    system clock again for None; returns the clock it replaces. For tests."""
    previous, _clock[0] = _clock[0], clock
    return previous


def epoch_us(value: object) -> int | None:
    """A timezone-aware datetime as microseconds since the Unix epoch; None for anything else
    (a naive datetime names no instant)."""
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return (value - _EPOCH) // _MICROSECOND
    return None
