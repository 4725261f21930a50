"""Helpers for testing code that uses purposeguard.

``capture_violations()`` records every violation event inside its block, in enforce and monitor
mode alike, from any thread; ``make_policy()`` builds a small policy in one line;
``RecordingSink`` stands in for the audit log; ``retention_clock()`` sets the time retention
periods are measured at; ``isolated_guards()`` lets a test configure a policy unrelated to the
guards defined elsewhere; ``guards()`` lists the guards kept bound; ``unchecked_caches()`` finds
functools caches around guarded accessors; ``flush()`` delivers what is buffered; ``reset()``
forgets all configuration between tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from . import _config, _time
from ._cache import unchecked_caches
from ._emitter import emitter
from ._policy import Mode, Policy, Purpose
from ._state import guards, isolated_guards

__all__ = [
    "RecordingSink",
    "capture_violations",
    "flush",
    "guards",
    "isolated_guards",
    "make_policy",
    "reset",
    "retention_clock",
    "unchecked_caches",
]


@contextmanager
def capture_violations() -> Iterator[list[dict[str, Any]]]:
    """Yield the list of violation events (dicts in the DESIGN §5 schema) recorded inside the
    block. Events are appended when the violation happens, not when logs are flushed."""
    with emitter.capture() as captured:
        yield captured


class RecordingSink:
    """A sink that keeps every record it is given: what the audit log would receive (violations
    after storm control, storm summaries, mode changes, policy reloads, rejected claims, ...).
    Install it with ``pg.configure(audit_log=RecordingSink())``."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def emit(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass

    def named(self, event: str) -> list[dict[str, Any]]:
        """The records of one ``event`` name, after delivering everything buffered."""
        emitter.flush()
        return [r for r in self.records if r["event"] == event]


def make_policy(
    purposes: Iterable[str] | Mapping[str, str],
    *,
    id: str = "test",
    version: str = "1",
    mode: Mode = "enforce",
    compatible: Mapping[str, Iterable[str]] | None = None,
    modes: Mapping[str, Mode] | None = None,
) -> Policy:
    """A policy from purpose ids (or ids → descriptions); parents are added when missing."""
    described = dict(purposes) if isinstance(purposes, Mapping) else {p: p for p in purposes}
    for pid in list(described):
        parts = pid.split(".")
        for i in range(1, len(parts)):
            described.setdefault(".".join(parts[:i]), ".".join(parts[:i]))
    compatible, modes = compatible or {}, modes or {}
    return Policy(
        id=id,
        version=version,
        mode=mode,
        purposes={
            pid: Purpose(
                description=text,
                compatible_with=tuple(compatible.get(pid, ())),
                mode=modes.get(pid),
            )
            for pid, text in described.items()
        },
    )


@contextmanager
def retention_clock(now: Callable[[], datetime]) -> Iterator[None]:
    """Within the block, retention periods are measured at ``now()`` (a timezone-aware
    datetime) instead of the system clock."""

    def clock() -> int:
        at = _time.epoch_us(now())
        if at is None:
            raise ValueError("retention_clock: now() must return a timezone-aware datetime")
        return at

    previous = _time.use_clock(clock)
    try:
        yield
    finally:
        _time.use_clock(previous)


flush = _config.flush
reset = _config.reset
