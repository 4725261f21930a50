"""Violation events: built from allowlisted keys, recorded at once where a span is live, and
delivered to logs and the audit log through a bounded buffer with storm control.

Nothing here ever sees a guarded value: events are built from purposes, names and code locations.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, Protocol

import structlog
from opentelemetry import metrics, trace

__all__ = ["SCHEMA", "VIOLATION_KEYS", "Emitter", "Sink", "emitter"]

SCHEMA = "purposeguard.violation/1"
#: Environment variable: the ``service`` written into every event (else ``OTEL_SERVICE_NAME``).
ENV_SERVICE = "PURPOSEGUARD_SERVICE"
VIOLATION = "purposeguard.violation"
SUMMARY = "purposeguard.violation_summary"
DROPPED = "purposeguard.dropped"

#: The only keys a violation event may carry (DESIGN §5); ``seq``/``prev_hash`` are added by the
#: audit log.
VIOLATION_KEYS = (
    "event", "schema", "ts", "decision", "mode", "enforced", "reason", "purpose", "allowed",
    "prohibited", "field", "accessor", "channel", "policy_id", "policy_version", "subject",
    "trace_id", "span_id", "service", "code",
)  # fmt: skip

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_SKIP_DIRS: tuple[str, ...] = (_PACKAGE_DIR,)
for _name in ("wrapt", "pydantic", "pydantic_core", "contextlib", "functools"):
    _mod = sys.modules.get(_name)
    if _mod is not None and getattr(_mod, "__file__", None):
        _SKIP_DIRS += (str(Path(_mod.__file__).resolve().parent),)  # type: ignore[arg-type]
_DEMO_FILE = str(Path(__file__).resolve().with_name("_demo.py"))  # user code, though packaged
_SKIP_FILES = tuple(f"{os.sep}{name}.py" for name in ("contextlib", "functools"))


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


_skip_code: dict[CodeType, bool] = {}


def caller_location() -> str | None:
    """``file:line`` of the first frame outside purposeguard and the libraries it drives."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        skip = _skip_code.get(code)
        if skip is None:
            filename = code.co_filename
            skip = (
                filename.startswith(_SKIP_DIRS) or filename.endswith(_SKIP_FILES)
            ) and filename != _DEMO_FILE
            if len(_skip_code) < 10_000:
                _skip_code[code] = skip
        if not skip:
            return f"{code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


class Sink(Protocol):
    """Where buffered records go besides structlog (the audit log is one)."""

    def emit(self, record: dict[str, Any]) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def close(self) -> None: ...


_meter = metrics.get_meter("purposeguard")
_decisions = _meter.create_counter(
    "purposeguard.decisions", unit="{decision}", description="Denied uses of guarded data"
)


_DENY_ATTRIBUTES = {m: {"decision": "deny", "mode": m} for m in ("enforce", "monitor")}


class Emitter:
    """Delivers events. Captures and span events happen at once. Log lines and sink (audit)
    records are storm-controlled; sinks get them from the producing thread (each sink has its
    own bounded buffer and full-buffer policy), log lines go through a bounded buffer to a
    writer thread."""

    def __init__(self) -> None:
        self._reset_state()
        self.capacity = 10_000
        self.storm_limit = 100
        self.storm_window = 1.0
        self.sinks: tuple[Sink, ...] = ()
        self.service: str | None = (
            os.environ.get(ENV_SERVICE) or os.environ.get("OTEL_SERVICE_NAME") or None
        )
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
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._enqueued = 0
        self._written = 0
        self._dropped = 0
        self._storm: dict[tuple[Any, ...], list[Any]] = {}
        self._window_start = time.monotonic()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- producers ------------------------------------------------------------------------------

    def violation(
        self,
        key: tuple[Any, ...],
        mode: str,
        build: Callable[..., dict[str, Any]],
        args: tuple[Any, ...],
    ) -> None:
        """Record a violation. ``key`` identifies identical violations (field, accessor, purpose,
        reason, code location); ``build(*args)`` makes the event (a dict of VIOLATION_KEYS), and
        is not called for a storm-suppressed violation that no capture or recording span needs."""
        _decisions.add(1, _DENY_ATTRIBUTES.get(mode) or {"decision": "deny", "mode": mode})
        span = trace.get_current_span()
        recording = span.is_recording()
        with self._lock:
            out = (
                self._roll_window()
                if time.monotonic() - self._window_start >= self.storm_window
                else []
            )
            entry = self._storm.get(key)
            if entry is None:
                entry = self._storm[key] = [0, 0, None]
            entry[0] += 1
            suppressed = entry[0] > self.storm_limit
            if suppressed:
                entry[1] += 1  # counted into the window's summary instead
        if suppressed and not recording and not self._captures:
            if out and self.sinks:
                self._to_sinks(out)
            return
        event = build(*args)
        ctx = span.get_span_context()
        if ctx.is_valid:
            event["trace_id"] = format(ctx.trace_id, "032x")
            event["span_id"] = format(ctx.span_id, "016x")
        for captured in self._captures:
            captured.append(dict(event))
        if recording:
            span.add_event(
                VIOLATION,
                {
                    f"purposeguard.{k}": v
                    for k, v in event.items()
                    if v is not None and k != "event"
                },
            )
        if not suppressed:
            with self._lock:
                if entry[2] is None:
                    entry[2] = event  # the summary of this storm is written from the first one
                self._put(VIOLATION, event)
            out.append(event)
        if out and self.sinks:
            self._to_sinks(out)

    def record(self, name: str, fields: dict[str, Any]) -> None:
        """Record an operational event (mode change, policy reload, rejected claim, ...)."""
        event = {"event": name, "ts": now_iso(), **fields}
        with self._cond:
            out = self._roll_window()
            self._put(name, event)
        if self.sinks:
            self._to_sinks([*out, event])

    def _put(self, name: str, event: dict[str, Any]) -> None:
        """Queue ``event`` for the log writer thread (the caller holds the lock)."""
        if self._closed:
            self._log([(name, event)])
            return
        if len(self._queue) >= self.capacity:
            self._dropped += 1
            return
        self._queue.append((name, event))
        self._enqueued += 1
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="purposeguard-events", daemon=True
            )
            self._thread.start()
        self._cond.notify()

    def _roll_window(self, force: bool = False) -> list[dict[str, Any]]:
        """Close the storm window if it is over: one summary per suppressed storm, and a count
        of log lines dropped for a full buffer. The caller holds the lock; the returned records
        are for the sinks, to be handed over after the lock is released."""
        now = time.monotonic()
        if not force and now - self._window_start < self.storm_window:
            return []
        out: list[dict[str, Any]] = []
        for _count, suppressed, first in self._storm.values():
            if suppressed and first is not None:
                summary = {k: first.get(k) for k in _SUMMARY_KEYS}
                summary.update(event=SUMMARY, ts=now_iso(), decision="deny", count=suppressed,
                               window_seconds=round(now - self._window_start, 3))  # fmt: skip
                out.append(summary)
                self._queue.append((SUMMARY, summary))
                self._enqueued += 1
        if self._dropped:
            # Only the log buffer overflowed: the sinks had those records directly.
            dropped = {"event": DROPPED, "ts": now_iso(), "count": self._dropped, "sink": "log"}
            self._dropped = 0
            self._queue.append((DROPPED, dropped))
            self._enqueued += 1
        self._storm.clear()
        self._window_start = now
        return out

    def _to_sinks(self, events: list[dict[str, Any]]) -> None:
        for sink in self.sinks:
            for event in events:
                try:
                    sink.emit(event)
                except Exception:  # a sink failure never changes a decision
                    pass

    # --- the log writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait(self.storm_window)
                out = self._roll_window()
                batch = list(self._queue)
                self._queue.clear()
            if out and self.sinks:
                self._to_sinks(out)
            if batch:
                self._log(batch)
                with self._cond:
                    self._written += len(batch)
                    self._cond.notify_all()

    def _log(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        log = structlog.get_logger("purposeguard")
        for name, event in batch:
            fields = {k: v for k, v in event.items() if k != "event"}
            try:
                if name in (VIOLATION, SUMMARY, DROPPED):
                    log.warning(name, **fields)
                else:
                    log.info(name, **fields)
            except Exception:  # a sink failure never changes a decision
                pass

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Deliver everything recorded so far, storm summaries included; True if all made it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            out = self._roll_window(force=True)
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
            except Exception:  # a failing sink is a failed flush
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
            except Exception:  # a sink failure never stops shutdown
                pass

    @contextmanager
    def capture(self) -> Iterator[list[dict[str, Any]]]:
        captured: list[dict[str, Any]] = []
        self._captures = [*self._captures, captured]
        try:
            yield captured
        finally:
            self._captures = [c for c in self._captures if c is not captured]


_SUMMARY_KEYS = (
    "schema", "mode", "enforced", "reason", "purpose", "allowed", "prohibited", "field",
    "accessor", "channel", "policy_id", "policy_version", "service", "code",
)  # fmt: skip


emitter = Emitter()
