"""Delivering events: captures and span events at once, log lines and audit records through
storm control and a bounded buffer.

Storm limits, the buffer's size and the service name are read from :mod:`purposeguard._state`
at each use; the emitter keeps only its queue and counts. A sink failure is logged once per kind
and window, counted, and swallowed: it never changes a decision.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import metrics, trace

from ._events import (
    DROPPED,
    SUMMARY,
    VIOLATION,
    DroppedEvent,
    Event,
    OperationalEvent,
    SummaryEvent,
    ViolationEvent,
)
from ._state import Sink, state
from ._time import now_iso

__all__ = ["Emitter", "emitter", "report_sink_failure"]

_meter = metrics.get_meter("purposeguard")
_decisions = _meter.create_counter(
    "purposeguard.decisions", unit="{decision}", description="Denied uses of guarded data"
)
_DENY_ATTRIBUTES = {m: {"decision": "deny", "mode": m} for m in ("enforce", "monitor")}
_WARNINGS = frozenset({VIOLATION, SUMMARY, DROPPED})
_current_span = trace.get_current_span
_monotonic = time.monotonic
_NOTHING: list[Event] = []  # no window closed: never appended to

#: A failing sink is logged at most once per kind in this many seconds (the rest are counted).
SINK_FAILURE_INTERVAL = 60.0
_failures: dict[str, list[float]] = {}  # kind → [failures since the last log line, its time]
_failures_lock = threading.Lock()


def report_sink_failure(kind: str, error: BaseException) -> None:
    """Log that a sink (``kind``: ``structlog``, ``span``, ``audit``, ...) failed, at most once
    per kind every :data:`SINK_FAILURE_INTERVAL` seconds with the number of failures since the
    last line. Never raises."""
    now = time.monotonic()
    with _failures_lock:
        entry = _failures.setdefault(kind, [0, -SINK_FAILURE_INTERVAL])
        entry[0] += 1
        if now - entry[1] < SINK_FAILURE_INTERVAL:
            return
        count, entry[0], entry[1] = int(entry[0]), 0, now
    try:
        structlog.get_logger("purposeguard").error(
            "purposeguard.sink_failed", sink=kind, error=type(error).__name__, failures=count
        )
    except Exception:  # the logger itself is the failing sink: nothing more to do
        pass


class Emitter:
    """Delivers events. Captures and span events happen at once. Log lines and sink (audit)
    records are storm-controlled; sinks get them from the producing thread (each sink has its
    own bounded buffer and full-buffer policy), log lines go through a bounded buffer to a
    writer thread."""

    def __init__(self) -> None:
        self._reset_state()
        self.sinks: tuple[Sink, ...] = ()
        self._captures: list[list[dict[str, Any]]] = []
        os.register_at_fork(after_in_child=self._reset_state)
        atexit.register(self.close)

    def set_sinks(self, sinks: tuple[Sink, ...]) -> None:
        """Deliver to ``sinks`` from now on. The exit hook is registered again, so that it runs
        before the exit hooks of the sinks' own modules (atexit runs the last registered first):
        what is still buffered at exit, storm summaries included, reaches sinks still open."""
        self.sinks = sinks
        atexit.unregister(self.close)
        atexit.register(self.close)

    def _reset_state(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # the same lock, for waiting on it
        self._queue: deque[Event] = deque()
        self._enqueued = 0
        self._written = 0
        self._dropped = 0
        #: storm key → [uses this window, suppressed this window, the window's first event]
        self._storm: dict[tuple[Any, ...], list[Any]] = {}
        self._window_start = time.monotonic()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- producers ------------------------------------------------------------------------------

    def violation(self, key: tuple[Any, ...], mode: str, facts: tuple[Any, ...]) -> None:
        """Record a violation. ``key`` identifies identical violations (field, accessor, purpose,
        reason, code location); ``facts`` are the fields of a :class:`ViolationEvent` from
        ``mode`` to ``code``."""
        counted = self.count_violation(key, mode)
        if counted is not None:
            self.emit_violation(counted, facts)

    def count_violation(self, key: tuple[Any, ...], mode: str) -> tuple[Any, ...] | None:
        """The first half of :meth:`violation`: count it (the counter, the storm window), and
        return None when that is all (a storm-suppressed violation that no capture or recording
        span needs: its event is never built), else what :meth:`emit_violation` takes."""
        _decisions.add(1, _DENY_ATTRIBUTES.get(mode) or {"decision": "deny", "mode": mode})
        span = _current_span()
        recording = span.is_recording()
        with self._lock:
            out = (
                self._roll_window(True)
                if _monotonic() - self._window_start >= state.storm_window
                else _NOTHING
            )
            entry = self._storm.get(key)
            if entry is None:
                entry = self._storm[key] = [0, 0, None]
            entry[0] += 1
            suppressed = entry[0] > state.storm_limit
            if suppressed:
                entry[1] += 1  # counted into the window's summary instead
        if suppressed and not recording and not self._captures:
            if out and self.sinks:
                self._to_sinks(out)
            return None
        return (span, recording, suppressed, entry, [] if out is _NOTHING else out)

    def emit_violation(self, counted: tuple[Any, ...], facts: tuple[Any, ...]) -> None:
        """The second half of :meth:`violation`: build the event from ``facts`` and deliver it."""
        span, recording, suppressed, entry, out = counted
        ctx = span.get_span_context()
        ids: tuple[str | None, str | None] = (None, None)
        if ctx.is_valid:
            ids = (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
        event = ViolationEvent._make((now_iso(), *facts, *ids))
        if self._captures:
            data = event.to_dict()
            for captured in self._captures:
                captured.append(dict(data))
        if recording:
            try:
                span.add_event(VIOLATION, event.span_attributes())
            except Exception as exc:  # a sink failure never changes a decision
                report_sink_failure("span", exc)
        if not suppressed:
            with self._lock:
                if entry[2] is None:
                    entry[2] = event  # the summary of this storm is written from the first one
                self._put(event)
            out.append(event)
        if out and self.sinks:
            self._to_sinks(out)

    def record(self, name: str, fields: dict[str, Any]) -> None:
        """Record an operational event (mode change, policy reload, rejected claim, ...)."""
        event = OperationalEvent.of(name, fields)
        with self._cond:
            out = self._roll_window(False)
            self._put(event)
        if self.sinks:
            self._to_sinks([*out, event])

    def _put(self, event: Event) -> None:
        """Queue ``event`` for the log writer thread (the caller holds the lock)."""
        if self._closed:
            self._log([event])
            return
        if len(self._queue) >= state.buffer_size:
            self._dropped += 1
            return
        self._queue.append(event)
        self._enqueued += 1
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="purposeguard-events", daemon=True
            )
            self._thread.start()
        self._cond.notify()

    def _roll_window(self, force: bool) -> list[Event]:
        """Close the storm window if it is over: one summary per suppressed storm, and a count
        of log lines dropped for a full buffer. The caller holds the lock; the returned records
        are for the sinks, to be handed over after the lock is released."""
        now = time.monotonic()
        if not force and now - self._window_start < state.storm_window:
            return []
        out: list[Event] = []
        for _count, suppressed, first in self._storm.values():
            if suppressed and first is not None:
                elapsed = round(now - self._window_start, 3)
                summary = SummaryEvent(first, suppressed, elapsed, now_iso())
                out.append(summary)
                self._queue.append(summary)
                self._enqueued += 1
        if self._dropped:
            # Only the log buffer overflowed: the sinks had those records directly.
            self._queue.append(DroppedEvent(self._dropped, "log", now_iso()))
            self._dropped = 0
            self._enqueued += 1
        self._storm.clear()
        self._window_start = now
        return out

    def _to_sinks(self, events: Sequence[Event]) -> None:
        records = [event.to_dict() for event in events]
        for sink in self.sinks:
            for record in records:
                try:
                    sink.emit(record)
                except Exception as exc:  # a sink failure never changes a decision
                    report_sink_failure(type(sink).__name__, exc)

    # --- the log writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait(state.storm_window)
                out = self._roll_window(False)
                batch = list(self._queue)
                self._queue.clear()
            if out and self.sinks:
                self._to_sinks(out)
            if batch:
                self._log(batch)
                with self._cond:
                    self._written += len(batch)
                    self._cond.notify_all()

    def _log(self, batch: Sequence[Event]) -> None:
        log = structlog.get_logger("purposeguard")
        for event in batch:
            fields = event.to_dict()
            name = fields.pop("event")
            try:
                if name in _WARNINGS:
                    log.warning(name, **fields)
                else:
                    log.info(name, **fields)
            except Exception as exc:  # a sink failure never changes a decision
                report_sink_failure("structlog", exc)

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Deliver everything recorded so far, storm summaries included; True if all made it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            out = self._roll_window(True)
            target = self._enqueued
            if self._queue and self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="purposeguard-events", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        if out and self.sinks:
            self._to_sinks(out)
        with self._cond:
            while self._written < target and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        ok = True
        for sink in self.sinks:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ok = sink.flush(left) and ok
            except Exception as exc:  # a failing sink is a failed flush
                report_sink_failure(type(sink).__name__, exc)
                ok = False
        return ok

    def close(self) -> None:
        """Flush, then log synchronously from now on (at interpreter exit)."""
        self.flush()
        with self._cond:
            self._closed = True
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # a sink failure never stops shutdown
                report_sink_failure(type(sink).__name__, exc)

    @contextmanager
    def capture(self) -> Iterator[list[dict[str, Any]]]:
        captured: list[dict[str, Any]] = []
        self._captures = [*self._captures, captured]
        try:
            yield captured
        finally:
            self._captures = [c for c in self._captures if c is not captured]


emitter = Emitter()
